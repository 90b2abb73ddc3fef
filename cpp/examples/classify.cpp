// The README's example: classify one image with a sladkit bundle (built by tests/cpp via find_package).
#include <iostream>

#include <sladkit/sladkit.hpp>

int main(int argc, char** argv) {
  if (argc != 3) return std::cerr << "usage: classify BUNDLE IMAGE\n", 2;
  try {
    sladkit::Predictor predictor(argv[1]);                      // reads manifest.json, loads model.onnx
    const sladkit::Image image = sladkit::load_image(argv[2]);  // or Image{width, height, rgb_pixels}
    for (const sladkit::Prediction& p : predictor.classify(image, 3))
      std::cout << p.index << " " << p.label << " " << p.score << "\n";
  } catch (const sladkit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

// Image files in and out, through stb_image / stb_image_write (compiled here, header-only).
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>

#include "sladkit/sladkit.hpp"

namespace sladkit {

constexpr long long kMaxImagePixels = 178956970;  // Pillow's default: 2 * 89478485

Image load_image(const std::filesystem::path& file) {
  if (!std::filesystem::is_regular_file(file)) throw Error(file.string() + " not found; expected an image file");
  int width = 0, height = 0, channels = 0;
  // Pillow's decompression-bomb limit (2 * PIL.Image.MAX_IMAGE_PIXELS), read from the header before decoding.
  if (stbi_info(file.string().c_str(), &width, &height, &channels) &&
      static_cast<long long>(width) * height > kMaxImagePixels)
    throw Error("cannot read image " + file.string() + " (refused as a possible decompression bomb: " +
                std::to_string(width) + "x" + std::to_string(height) + " = " +
                std::to_string(static_cast<long long>(width) * height) + " pixels, over Pillow's limit of " +
                std::to_string(kMaxImagePixels) + "); downscale the file");
  // req_comp 3: grey is replicated and alpha dropped, as PIL's convert("RGB") does.
  // 16-bit PNGs are reduced to their high byte (v >> 8), as sladkit.data.images does in Python.
  stbi_uc* data = stbi_load(file.string().c_str(), &width, &height, &channels, 3);
  if (data == nullptr)
    throw Error("cannot read image " + file.string() + " (" + stbi_failure_reason() +
                "); expected a PNG, JPEG, BMP, TGA, GIF, PSD, HDR or PNM file");
  Image image{width, height, std::vector<std::uint8_t>(data, data + std::size_t(width) * height * 3)};
  stbi_image_free(data);
  return image;
}

void save_gray_png(const std::filesystem::path& file, int width, int height,
                   const std::vector<std::uint8_t>& values) {
  if (values.size() != std::size_t(width) * height) throw Error("save_gray_png: values do not match the size");
  if (!stbi_write_png(file.string().c_str(), width, height, 1, values.data(), width))
    throw Error("cannot write " + file.string() + "; check that its folder exists and is writable");
}

}  // namespace sladkit

// Image files in and out, through stb_image / stb_image_write (compiled here, header-only).
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>

#include "sladkit/sladkit.hpp"

namespace sladkit {

Image load_image(const std::filesystem::path& file) {
  if (!std::filesystem::is_regular_file(file)) throw Error(file.string() + " not found; expected an image file");
  int width = 0, height = 0, channels = 0;
  // req_comp 3: grey is replicated and alpha dropped, as PIL's convert("RGB") does.
  // 16-bit PNGs are reduced to their high byte.
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

// Eval preprocessing, bit for bit as sladkit/data/transforms.py::preprocess_eval with Pillow:
// shorter-side resize (Pillow's ImagingResample: separable, antialiased when downscaling, horizontal pass
// then vertical pass, 22-bit fixed-point coefficients, uint8 rounding and clipping after each pass;
// NEAREST is Pillow's affine nearest-neighbour), centre crop (round half to even), then normalisation.
#include <algorithm>
#include <cmath>

#include "sladkit/sladkit.hpp"

namespace sladkit {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear_filter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic_filter(double x) {  // Keys' cubic convolution, a = -0.5
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output pixel: first input pixel, number of input pixels, and fixed-point weights (ksize each).
struct Coefficients {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<std::int32_t> weights;
};

Coefficients precompute(int in_size, int out_size, Interpolation interpolation) {
  const bool cubic = interpolation == Interpolation::Bicubic;
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);  // widen the filter when downscaling (antialias)
  const double support = (cubic ? 2.0 : 1.0) * filterscale;
  Coefficients c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(std::size_t(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(int(center - support + 0.5), 0);
    const int xmax = std::min(int(center + support + 0.5), in_size) - xmin;
    const double ss = 1.0 / filterscale;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double t = (x + xmin - center + 0.5) * ss;
      k[x] = cubic ? bicubic_filter(t) : bilinear_filter(t);
      total += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = total != 0.0 ? k[x] / total : k[x];
      c.weights[std::size_t(xx) * c.ksize + x] =
          int(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

std::uint8_t clip8(int v) { return std::uint8_t(std::clamp(v >> kPrecisionBits, 0, 255)); }

// One separable pass along x (horizontal) or y (vertical).
Image resample_pass(const Image& in, int out_size, Interpolation interpolation, bool horizontal) {
  const auto c = precompute(horizontal ? in.width : in.height, out_size, interpolation);
  Image out{horizontal ? out_size : in.width, horizontal ? in.height : out_size, {}};
  out.pixels.resize(std::size_t(out.width) * out.height * 3);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      const int o = horizontal ? x : y;
      const std::int32_t* k = &c.weights[std::size_t(o) * c.ksize];
      int sum[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int i = 0; i < c.count[o]; ++i) {
        const int sx = horizontal ? c.first[o] + i : x, sy = horizontal ? y : c.first[o] + i;
        const std::uint8_t* p = &in.pixels[(std::size_t(sy) * in.width + sx) * 3];
        for (int ch = 0; ch < 3; ++ch) sum[ch] += p[ch] * k[i];
      }
      std::uint8_t* q = &out.pixels[(std::size_t(y) * out.width + x) * 3];
      for (int ch = 0; ch < 3; ++ch) q[ch] = clip8(sum[ch]);
    }
  }
  return out;
}

// Pillow's ImagingScaleAffine: the source coordinate is accumulated in double and truncated; a pixel that
// falls outside the source (rounding) stays 0, as Pillow leaves it.
Image resize_nearest(const Image& in, int width, int height) {
  Image out{width, height, std::vector<std::uint8_t>(std::size_t(width) * height * 3, 0)};
  const double ax = double(in.width) / width, ay = double(in.height) / height;
  std::vector<int> xs(width);
  double xo = ax * 0.5;
  for (int x = 0; x < width; ++x, xo += ax) xs[x] = int(xo);
  double yo = ay * 0.5;
  for (int y = 0; y < height; ++y, yo += ay) {
    const int sy = int(yo);
    if (sy >= in.height) continue;
    for (int x = 0; x < width; ++x)
      if (xs[x] < in.width)
        std::copy_n(&in.pixels[(std::size_t(sy) * in.width + xs[x]) * 3], 3,
                    &out.pixels[(std::size_t(y) * width + x) * 3]);
  }
  return out;
}

}  // namespace

Image resize(const Image& image, int width, int height, Interpolation interpolation) {
  if (width < 1 || height < 1 || image.width < 1 || image.height < 1)
    throw Error("resize: image and target sizes must be positive");
  if (interpolation == Interpolation::Nearest) return resize_nearest(image, width, height);
  Image out = image;
  if (width != image.width) out = resample_pass(out, width, interpolation, true);
  if (height != image.height) out = resample_pass(out, height, interpolation, false);
  return out;
}

Image resize_crop(const Image& image, const Preprocessing& p) {
  if (image.width < 1 || image.height < 1 || image.pixels.size() != std::size_t(image.width) * image.height * 3)
    throw Error("image is empty or its pixel buffer does not match its size");
  // Shorter side to p.resize; the longer one scaled and truncated, as Python's int(resize * long / short).
  int w = p.resize, h = p.resize;
  if (image.width <= image.height)
    h = int(double(std::int64_t(p.resize) * image.height) / image.width);
  else
    w = int(double(std::int64_t(p.resize) * image.width) / image.height);
  const Image resized =
      (w == image.width && h == image.height) ? image : resize(image, w, h, p.interpolation);
  const int s = p.center_crop;
  const int top = int(std::nearbyint((h - s) / 2.0)), left = int(std::nearbyint((w - s) / 2.0));  // half to even
  Image crop{s, s, std::vector<std::uint8_t>(std::size_t(s) * s * 3)};
  for (int y = 0; y < s; ++y)
    std::copy_n(&resized.pixels[(std::size_t(top + y) * w + left) * 3], std::size_t(s) * 3,
                &crop.pixels[std::size_t(y) * s * 3]);
  return crop;
}

std::vector<float> normalize(const Image& crop, const Preprocessing& p) {
  const std::size_t plane = std::size_t(crop.width) * crop.height;
  std::vector<float> out(plane * 3);
  for (std::size_t i = 0; i < plane; ++i)
    for (int ch = 0; ch < 3; ++ch)
      // x * float(1/255), as torchvision's ToDtype(scale=True) and sladkit.data.transforms.normalize_eval
      out[ch * plane + i] = (float(crop.pixels[i * 3 + ch]) * (1.0f / 255.0f) - p.mean[ch]) / p.std[ch];
  return out;
}

}  // namespace sladkit

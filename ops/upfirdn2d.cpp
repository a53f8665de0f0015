// toonlab: Python binding and argument checks for the upfirdn2d CUDA kernel (upfirdn2d.cu).
// The Python wrapper (ops/upfirdn2d.py) normalises arguments; these checks guard against
// misuse of the raw extension and turn would-be memory errors into clear exceptions.

#include <torch/extension.h>

#include <cstdint>
#include <cstdlib>
#include <string>

int toonlab_upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, int upx, int upy, int downx,
                           int downy, int px0, int px1, int py0, int py1, double gain, bool force_generic);

namespace {

// Numbers go into error messages through std::to_string, never `ostream << int`: on the H100
// image (torch 2.11, nvcc 13) streaming an integer into a TORCH_CHECK message segfaulted inside
// the extension, while strings, devices and dtypes streamed fine.
std::string num(int64_t v) { return std::to_string(v); }
std::string num(double v) { return std::to_string(v); }
std::string dims(at::IntArrayRef s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

constexpr int64_t kMaxTaps = 32;            // per side; larger filters use the PyTorch reference
constexpr int64_t kMaxExtent = int64_t(1) << 30;  // spatial coordinates are int32 in the kernel

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1, double gain,
                     bool force_generic) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor, got ", x.device());
    TORCH_CHECK(f.device() == x.device(), "upfirdn2d: f must be on ", x.device(), ", got ", f.device());
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W], got ", num(x.dim()), "-D");
    TORCH_CHECK(f.dim() == 2, "upfirdn2d: f must be 2-D [kh, kw], got ", num(f.dim()), "-D");
    TORCH_CHECK(at::isFloatingType(x.scalar_type()), "upfirdn2d: x must be floating point, got ", x.scalar_type());
    const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    TORCH_CHECK(f.scalar_type() == acc_type, "upfirdn2d: f must be ", acc_type, " for ", x.scalar_type(),
                " input, got ", f.scalar_type());
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up/down factors must be >= 1");
    const int64_t kh = f.size(0), kw = f.size(1);
    TORCH_CHECK(kh >= 1 && kw >= 1 && kh <= kMaxTaps && kw <= kMaxTaps, "upfirdn2d: filter size ", num(kh), "x", num(kw),
                " not supported by the CUDA kernel (max ", num(kMaxTaps), " per side)");
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    TORCH_CHECK(H >= 1 && W >= 1, "upfirdn2d: empty spatial size");
    const int64_t up_h = H * upy + py0 + py1, up_w = W * upx + px0 + px1;
    TORCH_CHECK(H * upy < kMaxExtent && W * upx < kMaxExtent && std::abs(px0) < kMaxExtent &&
                    std::abs(px1) < kMaxExtent && std::abs(py0) < kMaxExtent && std::abs(py1) < kMaxExtent,
                "upfirdn2d: spatial size or padding too large");
    TORCH_CHECK(up_h >= kh && up_w >= kw, "upfirdn2d: padded upsampled size ", num(up_h), "x", num(up_w),
                " is smaller than the filter ", num(kh), "x", num(kw));
    const int64_t Ho = (up_h - kh) / downy + 1, Wo = (up_w - kw) / downx + 1;

    auto y = at::empty({N, C, Ho, Wo}, x.options().memory_format(x.suggest_memory_format()));
    if (y.numel() == 0) return y;
    toonlab_upfirdn2d_cuda(x, f, y, static_cast<int>(upx), static_cast<int>(upy), static_cast<int>(downx),
                           static_cast<int>(downy), static_cast<int>(px0), static_cast<int>(px1),
                           static_cast<int>(py0), static_cast<int>(py1), gain, force_generic);
    return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "toonlab upfirdn2d CUDA kernels";
    m.def("upfirdn2d", &upfirdn2d, "upfirdn2d forward (x, f, upx, upy, downx, downy, px0, px1, py0, py1, gain)",
          py::arg("x"), py::arg("f"), py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"),
          py::arg("px0"), py::arg("px1"), py::arg("py0"), py::arg("py1"), py::arg("gain") = 1.0,
          py::arg("force_generic") = false);
}

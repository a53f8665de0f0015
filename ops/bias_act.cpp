// toonlab: Python binding and argument checks for the fused bias + activation CUDA kernels
// (bias_act.cu).  Layout handling lives here: the kernels want a dense tensor whose bias
// channel follows from the memory-order index (contiguous, or channels_last with dim == 1);
// anything else is made contiguous first.

#include <torch/extension.h>

#include <string>

#include <optional>

int toonlab_bias_act_cuda(const at::Tensor& x, const at::Tensor& b, at::Tensor& y, int64_t inner, int64_t C,
                          int act, double alpha, double gain, double clamp);
int toonlab_bias_act_grad_cuda(const at::Tensor& dy, const at::Tensor& y, at::Tensor& dx, int act, double alpha,
                               double gain, double clamp);

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

void check_act(int64_t act, double alpha, double gain) {
    TORCH_CHECK(act >= 0 && act <= 2, "bias_act: act code must be 0 (linear), 1 (relu) or 2 (lrelu), got ", num(act));
    // relu/lrelu grads recover the active piece from the sign of y: that needs gain > 0 and
    // alpha >= 0 (the Python wrapper routes other settings to the reference implementation).
    TORCH_CHECK(act == 0 || gain > 0, "bias_act: the CUDA relu/lrelu kernels need gain > 0, got ", num(gain));
    TORCH_CHECK(act != 2 || alpha >= 0, "bias_act: the CUDA lrelu kernel needs alpha >= 0, got ", num(alpha));
}

at::Tensor bias_act(const at::Tensor& x_in, const std::optional<at::Tensor>& b_in, int64_t dim, int64_t act,
                    double alpha, double gain, double clamp) {
    TORCH_CHECK(x_in.is_cuda(), "bias_act: x must be a CUDA tensor, got ", x_in.device());
    TORCH_CHECK(at::isFloatingType(x_in.scalar_type()), "bias_act: x must be floating point, got ",
                x_in.scalar_type());
    check_act(act, alpha, gain);
    TORCH_CHECK(x_in.dim() >= 1, "bias_act: x must have at least one dimension");
    TORCH_CHECK(dim >= 0 && dim < x_in.dim(), "bias_act: dim ", num(dim), " out of range for a ", num(x_in.dim()),
                "-D tensor");
    at::Tensor b;
    if (b_in.has_value() && b_in->defined()) {
        b = *b_in;
        TORCH_CHECK(b.device() == x_in.device(), "bias_act: b must be on ", x_in.device(), ", got ", b.device());
        TORCH_CHECK(b.scalar_type() == x_in.scalar_type(), "bias_act: b must have dtype ", x_in.scalar_type(),
                    ", got ", b.scalar_type());
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x_in.size(dim), "bias_act: b must be 1-D of size ",
                    num(x_in.size(dim)), " (x.shape[dim]), got ", dims(b.sizes()));
        b = b.contiguous();
    }

    at::Tensor x = x_in;
    int64_t inner = 1;
    if (x.dim() == 4 && dim == 1 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
        inner = 1;  // channel is the fastest-varying index in memory
    } else {
        x = x.contiguous();
        for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
    }
    auto y = at::empty_like(x);  // preserve_format: same (dense) strides as x
    if (x.numel() == 0) return y;
    toonlab_bias_act_cuda(x, b, y, inner, x.size(dim), static_cast<int>(act), alpha, gain, clamp);
    return y;
}

at::Tensor bias_act_grad(const at::Tensor& dy_in, const at::Tensor& y_in, int64_t act, double alpha, double gain,
                         double clamp) {
    TORCH_CHECK(y_in.is_cuda() && dy_in.device() == y_in.device(), "bias_act_grad: dy and y must be on the same "
                "CUDA device, got ", dy_in.device(), " and ", y_in.device());
    TORCH_CHECK(dy_in.scalar_type() == y_in.scalar_type(), "bias_act_grad: dtype mismatch ", dy_in.scalar_type(),
                " vs ", y_in.scalar_type());
    TORCH_CHECK(dy_in.sizes() == y_in.sizes(), "bias_act_grad: shape mismatch ", dims(dy_in.sizes()), " vs ",
                dims(y_in.sizes()));
    check_act(act, alpha, gain);
    // Give both the same dense memory order so that element i means the same thing in each.
    const auto fmt = y_in.suggest_memory_format();
    const at::Tensor y = y_in.contiguous(fmt);
    const at::Tensor dy = dy_in.contiguous(fmt);
    auto dx = at::empty_like(y);
    if (y.numel() == 0) return dx;
    toonlab_bias_act_grad_cuda(dy, y, dx, static_cast<int>(act), alpha, gain, clamp);
    return dx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "toonlab fused bias + activation CUDA kernels";
    m.def("bias_act", &bias_act, "y = clamp(act(x + b) * gain)", py::arg("x"), py::arg("b"), py::arg("dim"),
          py::arg("act"), py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
    m.def("bias_act_grad", &bias_act_grad, "dx from dy and y", py::arg("dy"), py::arg("y"), py::arg("act"),
          py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
}

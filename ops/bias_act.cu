// toonlab: fused bias + activation (+ gain, + clamp) CUDA kernels.
//
//   forward: y  = clamp(act(x + b[c]) * gain, -clamp, clamp)      act in {linear, relu, lrelu}
//   grad:    dx = dy * gain * slope(y) * (no clamp || |y| < clamp)
//            slope(y) = 1 (linear) | y > 0 ? 1 : 0 (relu) | y > 0 ? 1 : alpha (lrelu)
//
// The activations are piecewise linear with gain > 0 and alpha >= 0 (checked in Python), so
// the sign of y tells which piece x + b was on and the grad needs only y, not x.  At x + b == 0
// exactly, y == 0 gives slope alpha (0 for relu), matching PyTorch's leaky_relu/relu.
//
// Both kernels are grid-stride elementwise loops: one read and one write per element (the
// bias is tiny and stays in cache).  The element index is the *memory-order* index of a
// dense tensor, and the bias channel is derived from it:
//     contiguous, bias along `dim`:     c = (i / inner) % C,  inner = prod(sizes after dim)
//     channels_last 4-D, dim == 1:      c = i % C             (passed as inner == 1)
// Anything else is made contiguous by the binding first.  When the pointers are 16-byte
// aligned and the channel pattern allows it, each thread moves 16 bytes at a time
// (VEC = 16 / sizeof(scalar_t)); all VEC elements then share one channel (inner % VEC == 0)
// or cover VEC consecutive channels (inner == 1, C % VEC == 0).  Index math is 32-bit when
// numel < 2^31.
//
// As in upfirdn2d.cu, the per-element code is plain __host__ __device__ so that
// ops/emulate.cpp can run it on the CPU for tests.

#ifdef TOONLAB_CPU_EMULATION
#include <cstddef>
#include <cstdint>
#ifndef TL_HD
#define TL_HD inline
#define TL_UNROLL
#endif
#else
// ATen/cuda/CUDAContext.h is avoided on purpose: it pulls in cuBLAS/cuSPARSE headers that
// minimal CUDA toolkits lack.  c10::cuda::getCurrentCUDAStream is the function that
// at::cuda::getCurrentCUDAStream aliases.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#ifndef TL_HD
#define TL_HD __host__ __device__ __forceinline__
#define TL_UNROLL _Pragma("unroll")
#endif
#endif

namespace toonlab_ba {

enum Act : int { kLinear = 0, kRelu = 1, kLrelu = 2 };

struct Params {
    const void* x;   // forward: input;  grad: dy
    const void* b;   // forward: bias [C] or nullptr;  grad: y (the forward output)
    void* y;         // forward: output; grad: dx
    int64_t numel;
    int64_t inner;   // memory-order elements per bias channel run (1 for channels_last)
    int64_t C;       // bias length
    double alpha, gain;
    double clamp;    // < 0: no clamp
    int has_bias;
    int vec;         // elements per thread per step, chosen by choose_vec
    int idx32;       // numel < 2^31 (set by dispatch)
    int force_idx64; // testing knob: 64-bit index math even when 32 bits suffice
};

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
    T v[N];
};

template <int ACT, typename acc_t>
TL_HD acc_t act_fwd(acc_t s, acc_t alpha) {
    if (ACT == kRelu) return s < acc_t(0) ? acc_t(0) : s;  // written so NaN propagates
    if (ACT == kLrelu) return s < acc_t(0) ? s * alpha : s;
    return s;
}

// d(act(s) * gain)/ds * dy, expressed through y = act(s) * gain (gain > 0).
template <int ACT, typename acc_t>
TL_HD acc_t act_grad(acc_t dy, acc_t y, acc_t alpha) {
    if (ACT == kRelu) return y > acc_t(0) ? dy : acc_t(0);
    if (ACT == kLrelu) return y > acc_t(0) ? dy : dy * alpha;
    return dy;
}

template <typename scalar_t, typename acc_t, int ACT, int VEC, typename index_t>
TL_HD void fwd_item(const Params& p, index_t v) {
    const index_t i = v * static_cast<index_t>(VEC);
    const Pack<scalar_t, VEC> in = *reinterpret_cast<const Pack<scalar_t, VEC>*>(static_cast<const scalar_t*>(p.x) + i);
    acc_t bias[VEC];
    if (p.has_bias) {
        const scalar_t* b = static_cast<const scalar_t*>(p.b);
        const index_t inner = static_cast<index_t>(p.inner), C = static_cast<index_t>(p.C);
        if (inner == 1) {  // VEC > 1 only when C % VEC == 0: channels c0 .. c0+VEC-1
            const index_t c0 = i % C;
            TL_UNROLL
            for (int j = 0; j < VEC; ++j) bias[j] = static_cast<acc_t>(b[c0 + j]);
        } else {           // VEC > 1 only when inner % VEC == 0: one channel
            const acc_t bc = static_cast<acc_t>(b[(i / inner) % C]);
            TL_UNROLL
            for (int j = 0; j < VEC; ++j) bias[j] = bc;
        }
    } else {
        TL_UNROLL
        for (int j = 0; j < VEC; ++j) bias[j] = acc_t(0);
    }
    const acc_t alpha = static_cast<acc_t>(p.alpha), gain = static_cast<acc_t>(p.gain);
    const acc_t clamp = static_cast<acc_t>(p.clamp);
    const bool do_clamp = p.clamp >= 0;
    Pack<scalar_t, VEC> out;
    TL_UNROLL
    for (int j = 0; j < VEC; ++j) {
        acc_t s = act_fwd<ACT, acc_t>(static_cast<acc_t>(in.v[j]) + bias[j], alpha) * gain;
        if (do_clamp) s = s > clamp ? clamp : (s < -clamp ? -clamp : s);
        out.v[j] = static_cast<scalar_t>(s);
    }
    *reinterpret_cast<Pack<scalar_t, VEC>*>(static_cast<scalar_t*>(p.y) + i) = out;
}

template <typename scalar_t, typename acc_t, int ACT, int VEC, typename index_t>
TL_HD void grad_item(const Params& p, index_t v) {
    const index_t i = v * static_cast<index_t>(VEC);
    const Pack<scalar_t, VEC> dy = *reinterpret_cast<const Pack<scalar_t, VEC>*>(static_cast<const scalar_t*>(p.x) + i);
    const Pack<scalar_t, VEC> yv = *reinterpret_cast<const Pack<scalar_t, VEC>*>(static_cast<const scalar_t*>(p.b) + i);
    const acc_t alpha = static_cast<acc_t>(p.alpha), gain = static_cast<acc_t>(p.gain);
    const bool do_clamp = p.clamp >= 0;
    // Clamped outputs were stored as the clamp value rounded to scalar_t: compare against that.
    const acc_t clamp_s = static_cast<acc_t>(static_cast<scalar_t>(static_cast<acc_t>(p.clamp)));
    Pack<scalar_t, VEC> out;
    TL_UNROLL
    for (int j = 0; j < VEC; ++j) {
        const acc_t y = static_cast<acc_t>(yv.v[j]);
        acc_t g = act_grad<ACT, acc_t>(static_cast<acc_t>(dy.v[j]) * gain, y, alpha);
        if (do_clamp && !((y < acc_t(0) ? -y : y) < clamp_s)) g = acc_t(0);
        out.v[j] = static_cast<scalar_t>(g);
    }
    *reinterpret_cast<Pack<scalar_t, VEC>*>(static_cast<scalar_t*>(p.y) + i) = out;
}

// Widest vector (16 bytes) the tensors allow, else 1.  Shared by the launcher and emulation.
inline int choose_vec(const Params& p, int elem_size, const void* const* ptrs, int nptrs) {
    const int vec = 16 / elem_size;
    if (vec <= 1 || p.numel % vec != 0) return 1;
    for (int k = 0; k < nptrs; ++k)
        if (reinterpret_cast<uintptr_t>(ptrs[k]) % 16 != 0) return 1;
    if (p.has_bias && !(p.inner % vec == 0 || (p.inner == 1 && p.C % vec == 0))) return 1;
    return vec;
}

// Runner protocol: run.template fwd<ACT, VEC, index_t>(p) / grad<...>(p).
template <int V, bool GRAD, typename Runner>
void dispatch_act(const Params& p, int act, Runner& run) {
    if (p.idx32) {
        if (act == kRelu) run.template go<GRAD, kRelu, V, uint32_t>(p);
        else if (act == kLrelu) run.template go<GRAD, kLrelu, V, uint32_t>(p);
        else run.template go<GRAD, kLinear, V, uint32_t>(p);
    } else {
        if (act == kRelu) run.template go<GRAD, kRelu, V, int64_t>(p);
        else if (act == kLrelu) run.template go<GRAD, kLrelu, V, int64_t>(p);
        else run.template go<GRAD, kLinear, V, int64_t>(p);
    }
}

// `elem_size` == sizeof(scalar_t); VEC_MAX == 16 / sizeof(scalar_t) as a constant.
template <int VEC_MAX, bool GRAD, typename Runner>
int dispatch(Params& p, int act, Runner& run, const void* const* ptrs, int nptrs, int elem_size,
             bool force_scalar) {
    p.idx32 = (!p.force_idx64 && p.numel < (int64_t(1) << 31)) ? 1 : 0;
    p.vec = force_scalar ? 1 : choose_vec(p, elem_size, ptrs, nptrs);
    if (VEC_MAX > 1 && p.vec == VEC_MAX) dispatch_act<VEC_MAX, GRAD>(p, act, run);
    else { p.vec = 1; dispatch_act<1, GRAD>(p, act, run); }
    return p.vec;
}

}  // namespace toonlab_ba

#ifndef TOONLAB_CPU_EMULATION
// =============================================================================================
// CUDA side.
// =============================================================================================
namespace toonlab_ba {

constexpr int kThreads = 256;

// Multiprocessor count of the current device (the CUDAGuard in the launcher selects it).
inline int sm_count() {
    int dev = 0, sms = 0;
    C10_CUDA_CHECK(cudaGetDevice(&dev));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms > 0 ? sms : 1;
}

template <typename scalar_t, typename acc_t, bool GRAD, int ACT, int VEC, typename index_t>
__global__ void __launch_bounds__(kThreads) elementwise_kernel(const Params p) {
    const index_t n = static_cast<index_t>(p.numel / VEC);
    const index_t stride = static_cast<index_t>(gridDim.x) * static_cast<index_t>(blockDim.x);
    for (index_t v = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < n; v += stride) {
        if (GRAD) grad_item<scalar_t, acc_t, ACT, VEC, index_t>(p, v);
        else fwd_item<scalar_t, acc_t, ACT, VEC, index_t>(p, v);
    }
}

template <typename scalar_t, typename acc_t>
struct CudaRunner {
    cudaStream_t stream;

    template <bool GRAD, int ACT, int VEC, typename index_t>
    void go(const Params& p) {
        auto kernel = elementwise_kernel<scalar_t, acc_t, GRAD, ACT, VEC, index_t>;
        const int64_t n = p.numel / VEC;
        int per_sm = 0;
        C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
        const int sms = sm_count();
        // A few waves of resident blocks: enough loads in flight to saturate HBM, few enough
        // that the grid-stride loop amortises the block start-up.
        const int64_t cap = static_cast<int64_t>(std::max(per_sm, 1)) * sms * 4;
        const int64_t grid = std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, cap));
        kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
};

}  // namespace toonlab_ba

// x (dense: contiguous, or channels_last with dim == 1), b (contiguous [C] or undefined),
// y allocated like x.  Returns the vector width used.
int toonlab_bias_act_cuda(const at::Tensor& x, const at::Tensor& b, at::Tensor& y, int64_t inner, int64_t C,
                          int act, double alpha, double gain, double clamp) {
    using namespace toonlab_ba;
    const c10::cuda::CUDAGuard guard(x.device());
    Params p{};
    p.x = x.data_ptr();
    p.b = b.defined() ? b.data_ptr() : nullptr;
    p.y = y.data_ptr();
    p.numel = x.numel();
    p.inner = inner;
    p.C = C;
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    p.has_bias = b.defined() ? 1 : 0;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    int vec = 1;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(),
                                    "toonlab_bias_act", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        CudaRunner<scalar_t, acc_t> runner{stream};
        const void* ptrs[2] = {p.x, p.y};
        vec = dispatch<16 / sizeof(scalar_t), false>(p, act, runner, ptrs, 2, sizeof(scalar_t), false);
    });
    return vec;
}

// dy, y dense with identical memory order; dx allocated like y.
int toonlab_bias_act_grad_cuda(const at::Tensor& dy, const at::Tensor& y, at::Tensor& dx, int act, double alpha,
                               double gain, double clamp) {
    using namespace toonlab_ba;
    const c10::cuda::CUDAGuard guard(y.device());
    Params p{};
    p.x = dy.data_ptr();
    p.b = y.data_ptr();
    p.y = dx.data_ptr();
    p.numel = y.numel();
    p.inner = 1;
    p.C = 1;
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    p.has_bias = 0;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    int vec = 1;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, y.scalar_type(),
                                    "toonlab_bias_act_grad", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        CudaRunner<scalar_t, acc_t> runner{stream};
        const void* ptrs[3] = {p.x, p.b, p.y};
        vec = dispatch<16 / sizeof(scalar_t), true>(p, act, runner, ptrs, 3, sizeof(scalar_t), false);
    });
    return vec;
}
#endif  // TOONLAB_CPU_EMULATION

// toonlab: CPU emulation of the CUDA kernels' per-thread code (tests only).
//
// Compiles upfirdn2d.cu and bias_act.cu with TOONLAB_CPU_EMULATION, which keeps their
// __host__ __device__ work-item functions and the host-side dispatchers and drops the CUDA
// launch code.  Every work item of a launch is then executed sequentially.  This checks the
// kernels' index arithmetic, tap selection, padding/cropping, phase handling, stride handling,
// vector/scalar paths and the dispatch logic on machines without a GPU.  It does not check
// anything CUDA-specific (launch configuration, shared memory, half types, races).
//
// Build: g++ -O1 -std=c++17 -shared -fPIC -fno-strict-aliasing emulate.cpp -o libemu.so
// Exposes a small C ABI for ctypes (see tests/test_ops.py).

#define TOONLAB_CPU_EMULATION 1
#include <cstdint>
#include <vector>

#include "bias_act.cu"
#include "upfirdn2d.cu"

namespace {

template <typename scalar_t, typename acc_t>
struct UfdEmuRunner {
    template <int UP, int DOWN, int K, int RY, int RX, int BY, int BX>
    void fast(const toonlab_ufd::Params& p) {
        using F = toonlab_ufd::Fast<scalar_t, acc_t, UP, DOWN, K, RY, RX, BY, BX>;
        acc_t w[K * K];
        F::load_taps(p, w);
        for (int64_t blk = 0; blk < p.nblocks; ++blk) F::run(p, w, blk);
    }
    void generic(const toonlab_ufd::Params& p) {
        std::vector<acc_t> w(static_cast<size_t>(p.kh) * p.kw);
        for (int t = 0; t < p.kh * p.kw; ++t) w[t] = toonlab_ufd::tap<acc_t>(p, t / p.kw, t % p.kw);
        for (int64_t idx = 0; idx < p.nblocks; ++idx) toonlab_ufd::generic_point<scalar_t, acc_t>(p, w.data(), idx);
    }
};

template <typename scalar_t, typename acc_t>
struct BaEmuRunner {
    template <bool GRAD, int ACT, int VEC, typename index_t>
    void go(const toonlab_ba::Params& p) {
        const index_t n = static_cast<index_t>(p.numel / VEC);
        for (index_t v = 0; v < n; ++v) {
            if (GRAD) toonlab_ba::grad_item<scalar_t, acc_t, ACT, VEC, index_t>(p, v);
            else toonlab_ba::fwd_item<scalar_t, acc_t, ACT, VEC, index_t>(p, v);
        }
    }
};

template <typename T>
int ufd_run(toonlab_ufd::Params& p) {
    UfdEmuRunner<T, T> run;
    return toonlab_ufd::dispatch(p, run);
}

}  // namespace

extern "C" {

// dtype: 0 float32, 1 float64 (x, y and f all of that type).
// ints[20]: N C H W Ho Wo kh kw upx upy downx downy px0 px1 py0 py1 cl_map force_generic force_idx64 0
// strides[10]: x(n,c,h,w) y(n,c,h,w) f(0,1), in elements.
// Returns the path id chosen by the dispatcher (0 generic, 1..6 specialised).
int toonlab_emu_upfirdn2d(int dtype, const void* x, void* y, const void* f, const int64_t* ints,
                          const int64_t* strides, double gain) {
    toonlab_ufd::Params p{};
    p.x = x; p.y = y; p.f = f;
    p.N = ints[0]; p.C = ints[1];
    p.H = static_cast<int>(ints[2]); p.W = static_cast<int>(ints[3]);
    p.Ho = static_cast<int>(ints[4]); p.Wo = static_cast<int>(ints[5]);
    p.kh = static_cast<int>(ints[6]); p.kw = static_cast<int>(ints[7]);
    p.upx = static_cast<int>(ints[8]); p.upy = static_cast<int>(ints[9]);
    p.downx = static_cast<int>(ints[10]); p.downy = static_cast<int>(ints[11]);
    p.px0 = static_cast<int>(ints[12]); p.px1 = static_cast<int>(ints[13]);
    p.py0 = static_cast<int>(ints[14]); p.py1 = static_cast<int>(ints[15]);
    p.cl_map = static_cast<int>(ints[16]);
    p.force_generic = static_cast<int>(ints[17]);
    p.force_idx64 = static_cast<int>(ints[18]);
    p.sxn = strides[0]; p.sxc = strides[1]; p.sxh = strides[2]; p.sxw = strides[3];
    p.syn = strides[4]; p.syc = strides[5]; p.syh = strides[6]; p.syw = strides[7];
    p.fs0 = strides[8]; p.fs1 = strides[9];
    p.gain = gain;
    return dtype == 1 ? ufd_run<double>(p) : ufd_run<float>(p);
}

// Forward: x, b (may be null), y dense in the same memory order.  Returns the vector width.
int toonlab_emu_bias_act(int dtype, const void* x, const void* b, void* y, int64_t numel, int64_t inner, int64_t C,
                         int act, double alpha, double gain, double clamp, int force_scalar, int force_idx64) {
    toonlab_ba::Params p{};
    p.force_idx64 = force_idx64;
    p.x = x; p.b = b; p.y = y;
    p.numel = numel; p.inner = inner; p.C = C;
    p.alpha = alpha; p.gain = gain; p.clamp = clamp;
    p.has_bias = b != nullptr;
    const void* ptrs[2] = {x, y};
    if (dtype == 1) {
        BaEmuRunner<double, double> run;
        return toonlab_ba::dispatch<2, false>(p, act, run, ptrs, 2, 8, force_scalar != 0);
    }
    BaEmuRunner<float, float> run;
    return toonlab_ba::dispatch<4, false>(p, act, run, ptrs, 2, 4, force_scalar != 0);
}

// Grad: dx from dy and y (all dense, same memory order).  Returns the vector width.
int toonlab_emu_bias_act_grad(int dtype, const void* dy, const void* y, void* dx, int64_t numel, int act,
                              double alpha, double gain, double clamp, int force_scalar, int force_idx64) {
    toonlab_ba::Params p{};
    p.force_idx64 = force_idx64;
    p.x = dy; p.b = y; p.y = dx;
    p.numel = numel; p.inner = 1; p.C = 1;
    p.alpha = alpha; p.gain = gain; p.clamp = clamp;
    p.has_bias = 0;
    const void* ptrs[3] = {dy, y, dx};
    if (dtype == 1) {
        BaEmuRunner<double, double> run;
        return toonlab_ba::dispatch<2, true>(p, act, run, ptrs, 3, 8, force_scalar != 0);
    }
    BaEmuRunner<float, float> run;
    return toonlab_ba::dispatch<4, true>(p, act, run, ptrs, 3, 4, force_scalar != 0);
}

}  // extern "C"

// toonlab: upfirdn2d CUDA kernels (upsample by zero insertion, pad/crop, FIR, downsample).
//
// Semantics, per channel plane (see ops/upfirdn2d.py for the full statement):
//   out[oy, ox] = sum_{ky,kx} U[oy*down_y + ky, ox*down_x + kx] * g[ky, kx]
//   g[ky, kx]   = gain * f[kh-1-ky, kw-1-kx]           (convolution == correlation with flipped f)
//   U[u, v]     = x[(u-py0)/up_y, (v-px0)/up_x]          when both offsets are >= 0, divisible by
//                                                        up and the quotient is in range; else 0
//
// Two kernel families share the host-side dispatcher `dispatch`:
//  * `Fast<...>`: compile-time up/down/kernel size (the StyleGAN2 cases: 4x4 kernel with up 2,
//    down 2 or plain blur).  Each thread produces an RY x RX block of outputs of one plane.
//    Because up, down, the taps and the "phase" of the block origin are all compile-time
//    constants, every (input row/col, output row/col) pair that meets a non-zero tap is known
//    at compile time: the loops unroll completely, the taps live in registers and each loaded
//    input value is reused for every output of the block that needs it.  Out-of-range input
//    (padding) is handled by predicated loads that yield 0.
//  * `generic_point`: one thread per output, runtime everything.  It walks only the taps that
//    land on non-zero (inserted) samples: start at the first tap whose upsampled position is
//    divisible by `up`, then step by `up`.  Taps are staged in shared memory.
//
// Input may have any strides (channels_last needs no copy).  The order in which threads walk
// the work follows the output's memory order (x fastest for NCHW, channel fastest for
// channels_last) so that loads and stores coalesce.
//
// The device code is written as plain __host__ __device__ functions so that the whole
// per-thread index logic can also be compiled by a host C++ compiler and executed on the
// CPU (ops/emulate.cpp, defines TOONLAB_CPU_EMULATION); tests/test_ops.py uses that to
// check this exact code against the PyTorch reference on machines without a GPU.

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

namespace toonlab_ufd {

struct Params {
    const void* x;  // [N, C, H, W], scalar_t, any strides
    void* y;        // [N, C, Ho, Wo], scalar_t, strides syn..syw
    const void* f;  // [kh, kw], acc_t (float, or double for double inputs), strides fs0/fs1
    int64_t N, C;
    int H, W, Ho, Wo;
    int64_t sxn, sxc, sxh, sxw;
    int64_t syn, syc, syh, syw;
    int64_t fs0, fs1;
    int kh, kw;
    int upx, upy, downx, downy;
    int px0, px1, py0, py1;
    double gain;
    int cl_map;         // 1: consecutive work items walk channels (channels_last output)
    int force_generic;  // testing knob: skip the specialised kernels
    int force_idx64;    // testing knob: 64-bit work-index decoding even when 32 bits suffice
    // Filled in by dispatch(): outputs per work item and the work decomposition.
    int ry, rx;
    int64_t nby, nbx, nblocks;
    int idx32;  // nblocks < 2^31: decode work indices with 32-bit arithmetic
};

// Non-negative remainder (C++ % truncates towards zero, so a % m < 0 for a < 0).
TL_HD int pos_mod(int a, int m) {
    const int r = a % m;
    return r < 0 ? r + m : r;
}

template <typename I>
TL_HD void decode_t(I blk, I C, I nby, I nbx, bool cl, I& n, I& c, I& by, I& bx) {
    if (cl) {
        c = blk % C; blk /= C;
        bx = blk % nbx; blk /= nbx;
        by = blk % nby; n = blk / nby;
    } else {
        bx = blk % nbx; blk /= nbx;
        by = blk % nby; blk /= nby;
        c = blk % C; n = blk / C;
    }
}

// Work item -> (plane n, c; block row by, block col bx).
TL_HD void decode(const Params& p, int64_t blk, int64_t& n, int64_t& c, int& by, int& bx) {
    if (p.idx32) {
        uint32_t n32, c32, by32, bx32;
        decode_t<uint32_t>(static_cast<uint32_t>(blk), static_cast<uint32_t>(p.C), static_cast<uint32_t>(p.nby),
                           static_cast<uint32_t>(p.nbx), p.cl_map != 0, n32, c32, by32, bx32);
        n = n32; c = c32; by = static_cast<int>(by32); bx = static_cast<int>(bx32);
    } else {
        int64_t by64, bx64;
        decode_t<int64_t>(blk, p.C, p.nby, p.nbx, p.cl_map != 0, n, c, by64, bx64);
        by = static_cast<int>(by64); bx = static_cast<int>(bx64);
    }
}

// Correlation-form tap: the weight that multiplies U[oy*down + ky, ox*down + kx].
template <typename acc_t>
TL_HD acc_t tap(const Params& p, int ky, int kx) {
    const acc_t* f = static_cast<const acc_t*>(p.f);
    return static_cast<acc_t>(p.gain) *
           f[static_cast<int64_t>(p.kh - 1 - ky) * p.fs0 + static_cast<int64_t>(p.kw - 1 - kx) * p.fs1];
}

// ---------------------------------------------------------------------------------------------
// Specialised path.
//
// A work item covers output rows oyb..oyb+RY-1 and columns oxb..oxb+RX-1 with oyb = by*RY,
// oxb = bx*RX.  Let ty = oyb*DOWN - py0 (upsampled position of the block's first tap row,
// relative to input row 0).  Its first contributing input row is iy0 = ceil(ty / UP) and
// BY = iy0*UP - ty = pos_mod(-ty, UP).  Since RY is a multiple of UP, oyb*DOWN is a multiple
// of UP, so BY = pos_mod(py0, UP) is the same for every work item: a template parameter.
// Input row iy0+i feeds output row oyb+j through tap ky = BY + i*UP - j*DOWN (valid when
// 0 <= ky < K); every output row of the block reads only rows >= iy0, and the last row any
// of them reads is i = NIY-1.  Same for columns.
// ---------------------------------------------------------------------------------------------
template <typename scalar_t, typename acc_t, int UP, int DOWN, int K, int RY, int RX, int BY, int BX>
struct Fast {
    static_assert(RY % UP == 0 && RX % UP == 0, "block must cover whole phases");
    static_assert(BY >= 0 && BY < UP && BX >= 0 && BX < UP, "phase out of range");
    static_assert(K >= UP, "kernel shorter than the upsampling factor");
    static constexpr int NIY = (K - 1 - BY + (RY - 1) * DOWN) / UP + 1;
    static constexpr int NIX = (K - 1 - BX + (RX - 1) * DOWN) / UP + 1;

    TL_HD static void load_taps(const Params& p, acc_t (&w)[K * K]) {
        TL_UNROLL
        for (int ky = 0; ky < K; ++ky) {
            TL_UNROLL
            for (int kx = 0; kx < K; ++kx) w[ky * K + kx] = tap<acc_t>(p, ky, kx);
        }
    }

    TL_HD static void run(const Params& p, const acc_t (&w)[K * K], int64_t blk) {
        int64_t n, c;
        int by, bx;
        decode(p, blk, n, c, by, bx);
        const int oyb = by * RY;
        const int oxb = bx * RX;
        const int ty = oyb * DOWN - p.py0;
        const int tx = oxb * DOWN - p.px0;
        // ty + BY and tx + BX are exact multiples of UP (possibly negative): the division is exact.
        const int iy0 = (ty + BY) / UP;
        const int ix0 = (tx + BX) / UP;

        const scalar_t* plane = static_cast<const scalar_t*>(p.x) + n * p.sxn + c * p.sxc;

        int64_t coff[NIX];
        bool cok[NIX];
        TL_UNROLL
        for (int q = 0; q < NIX; ++q) {
            const int ix = ix0 + q;
            cok[q] = ix >= 0 && ix < p.W;
            coff[q] = static_cast<int64_t>(ix) * p.sxw;
        }

        acc_t acc[RY][RX];
        TL_UNROLL
        for (int j = 0; j < RY; ++j) {
            TL_UNROLL
            for (int r = 0; r < RX; ++r) acc[j][r] = acc_t(0);
        }

        TL_UNROLL
        for (int i = 0; i < NIY; ++i) {
            const int iy = iy0 + i;
            const bool rok = iy >= 0 && iy < p.H;
            const int64_t roff = static_cast<int64_t>(iy) * p.sxh;
            acc_t v[NIX];
            TL_UNROLL
            for (int q = 0; q < NIX; ++q)
                v[q] = (rok && cok[q]) ? static_cast<acc_t>(plane[roff + coff[q]]) : acc_t(0);
            TL_UNROLL
            for (int j = 0; j < RY; ++j) {
                const int ky = BY + i * UP - j * DOWN;  // compile-time after unrolling
                if (ky < 0 || ky >= K) continue;
                TL_UNROLL
                for (int r = 0; r < RX; ++r) {
                    TL_UNROLL
                    for (int q = 0; q < NIX; ++q) {
                        const int kx = BX + q * UP - r * DOWN;
                        if (kx < 0 || kx >= K) continue;
                        acc[j][r] += v[q] * w[ky * K + kx];
                    }
                }
            }
        }

        scalar_t* out = static_cast<scalar_t*>(p.y) + n * p.syn + c * p.syc;
        TL_UNROLL
        for (int j = 0; j < RY; ++j) {
            const int oy = oyb + j;
            if (oy >= p.Ho) break;
            TL_UNROLL
            for (int r = 0; r < RX; ++r) {
                const int ox = oxb + r;
                if (ox < p.Wo)
                    out[static_cast<int64_t>(oy) * p.syh + static_cast<int64_t>(ox) * p.syw] =
                        static_cast<scalar_t>(acc[j][r]);
            }
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Generic path: one output per work item; `w` holds the correlation-form taps, w[ky*kw + kx].
// ---------------------------------------------------------------------------------------------
template <typename scalar_t, typename acc_t>
TL_HD void generic_point(const Params& p, const acc_t* w, int64_t idx) {
    int64_t n, c;
    int oy, ox;
    decode(p, idx, n, c, oy, ox);  // ry == rx == 1: blocks are single outputs

    // First tap whose upsampled position is a real (non-inserted) sample at or after row 0.
    const int ty = oy * p.downy - p.py0;
    int ky0 = pos_mod(-ty, p.upy);
    int iy0 = (ty + ky0) / p.upy;  // exact division
    if (iy0 < 0) {                 // skip taps that land in the top padding
        ky0 += -iy0 * p.upy;
        iy0 = 0;
    }
    const int tx = ox * p.downx - p.px0;
    int kx0 = pos_mod(-tx, p.upx);
    int ix0 = (tx + kx0) / p.upx;
    if (ix0 < 0) {
        kx0 += -ix0 * p.upx;
        ix0 = 0;
    }

    const scalar_t* plane = static_cast<const scalar_t*>(p.x) + n * p.sxn + c * p.sxc;
    acc_t acc = acc_t(0);
    for (int ky = ky0, iy = iy0; ky < p.kh && iy < p.H; ky += p.upy, ++iy) {
        const scalar_t* row = plane + static_cast<int64_t>(iy) * p.sxh;
        const acc_t* wrow = w + ky * p.kw;
        for (int kx = kx0, ix = ix0; kx < p.kw && ix < p.W; kx += p.upx, ++ix)
            acc += static_cast<acc_t>(row[static_cast<int64_t>(ix) * p.sxw]) * wrow[kx];
    }
    scalar_t* out = static_cast<scalar_t*>(p.y);
    out[n * p.syn + c * p.syc + static_cast<int64_t>(oy) * p.syh + static_cast<int64_t>(ox) * p.syw] =
        static_cast<scalar_t>(acc);
}

// ---------------------------------------------------------------------------------------------
// Host-side choice of kernel, shared by the CUDA launcher and the CPU emulation.
// Returns an id of the path taken: 0 generic, 1..4 up-2 (phase by*2+bx), 5 down-2, 6 blur.
// ---------------------------------------------------------------------------------------------
inline void set_work(Params& p, int ry, int rx) {
    p.ry = ry;
    p.rx = rx;
    p.nby = (p.Ho + ry - 1) / ry;
    p.nbx = (p.Wo + rx - 1) / rx;
    p.nblocks = p.N * p.C * p.nby * p.nbx;
    p.idx32 = (!p.force_idx64 && p.nblocks < (int64_t(1) << 31)) ? 1 : 0;
}

template <typename Runner>
int dispatch(Params& p, Runner& run) {
    const bool square = p.kh == p.kw && p.upx == p.upy && p.downx == p.downy;
    if (!p.force_generic && square && p.kh == 4) {
        if (p.upx == 2 && p.downx == 1) {
            set_work(p, 4, 2);
            const int by = pos_mod(p.py0, 2), bx = pos_mod(p.px0, 2);
            if (by == 0 && bx == 0) run.template fast<2, 1, 4, 4, 2, 0, 0>(p);
            else if (by == 0 && bx == 1) run.template fast<2, 1, 4, 4, 2, 0, 1>(p);
            else if (by == 1 && bx == 0) run.template fast<2, 1, 4, 4, 2, 1, 0>(p);
            else run.template fast<2, 1, 4, 4, 2, 1, 1>(p);
            return 1 + by * 2 + bx;
        }
        if (p.upx == 1 && p.downx == 2) {
            set_work(p, 4, 2);
            run.template fast<1, 2, 4, 4, 2, 0, 0>(p);
            return 5;
        }
        if (p.upx == 1 && p.downx == 1) {
            set_work(p, 8, 2);
            run.template fast<1, 1, 4, 8, 2, 0, 0>(p);
            return 6;
        }
    }
    set_work(p, 1, 1);
    run.generic(p);
    return 0;
}

}  // namespace toonlab_ufd

#ifndef TOONLAB_CPU_EMULATION
// =============================================================================================
// CUDA side.
// =============================================================================================
namespace toonlab_ufd {

constexpr int kThreads = 256;

// Multiprocessor count of the current device (the CUDAGuard in the launcher selects it).
inline int sm_count() {
    int dev = 0, sms = 0;
    C10_CUDA_CHECK(cudaGetDevice(&dev));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms > 0 ? sms : 1;
}

// No minimum-blocks hint: capping registers at 64 (4 blocks/SM) made the down/blur bodies
// spill (ptxas -v); uncapped they use 48-66 registers (float) with no local memory.
template <typename scalar_t, typename acc_t, int UP, int DOWN, int K, int RY, int RX, int BY, int BX>
__global__ void __launch_bounds__(kThreads) fast_kernel(const Params p) {
    using F = Fast<scalar_t, acc_t, UP, DOWN, K, RY, RX, BY, BX>;
    acc_t w[K * K];  // taps in registers, loaded once per thread (grid-stride loop below)
    F::load_taps(p, w);
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; blk < p.nblocks; blk += stride)
        F::run(p, w, blk);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) generic_kernel(const Params p) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    acc_t* w = reinterpret_cast<acc_t*>(smem_raw);
    const int taps = p.kh * p.kw;
    for (int t = threadIdx.x; t < taps; t += blockDim.x) w[t] = tap<acc_t>(p, t / p.kw, t % p.kw);
    __syncthreads();
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < p.nblocks; idx += stride)
        generic_point<scalar_t, acc_t>(p, w, idx);
}

// Enough blocks for one full wave of resident blocks; the grid-stride loops cover the rest.
template <typename KernelT>
inline int64_t grid_for(KernelT kernel, int64_t work, size_t smem) {
    const int64_t needed = (work + kThreads - 1) / kThreads;
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    const int sms = sm_count();
    const int64_t wave = static_cast<int64_t>(std::max(per_sm, 1)) * sms;
    return std::max<int64_t>(1, std::min(needed, wave));
}

template <typename scalar_t, typename acc_t>
struct CudaRunner {
    cudaStream_t stream;

    template <int UP, int DOWN, int K, int RY, int RX, int BY, int BX>
    void fast(const Params& p) {
        auto kernel = fast_kernel<scalar_t, acc_t, UP, DOWN, K, RY, RX, BY, BX>;
        const int64_t grid = grid_for(kernel, p.nblocks, 0);
        kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }

    void generic(const Params& p) {
        auto kernel = generic_kernel<scalar_t, acc_t>;
        const size_t smem = static_cast<size_t>(p.kh) * p.kw * sizeof(acc_t);
        const int64_t grid = grid_for(kernel, p.nblocks, smem);
        kernel<<<static_cast<unsigned>(grid), kThreads, smem, stream>>>(p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
};

}  // namespace toonlab_ufd

// Called from upfirdn2d.cpp after argument checks; `y` is allocated there.
int toonlab_upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, int upx, int upy, int downx,
                           int downy, int px0, int px1, int py0, int py1, double gain, bool force_generic) {
    using namespace toonlab_ufd;
    const c10::cuda::CUDAGuard guard(x.device());
    Params p{};
    p.x = x.data_ptr();
    p.y = y.data_ptr();
    p.f = f.data_ptr();
    p.N = x.size(0);
    p.C = x.size(1);
    p.H = static_cast<int>(x.size(2));
    p.W = static_cast<int>(x.size(3));
    p.Ho = static_cast<int>(y.size(2));
    p.Wo = static_cast<int>(y.size(3));
    p.sxn = x.stride(0); p.sxc = x.stride(1); p.sxh = x.stride(2); p.sxw = x.stride(3);
    p.syn = y.stride(0); p.syc = y.stride(1); p.syh = y.stride(2); p.syw = y.stride(3);
    p.fs0 = f.stride(0);
    p.fs1 = f.stride(1);
    p.kh = static_cast<int>(f.size(0));
    p.kw = static_cast<int>(f.size(1));
    p.upx = upx; p.upy = upy; p.downx = downx; p.downy = downy;
    p.px0 = px0; p.px1 = px1; p.py0 = py0; p.py1 = py1;
    p.gain = gain;
    p.cl_map = (y.dim() == 4 && y.size(1) > 1 && !y.is_contiguous() &&
                y.is_contiguous(at::MemoryFormat::ChannelsLast)) ? 1 : 0;
    p.force_generic = force_generic ? 1 : 0;

    int path = -1;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(),
                                    "toonlab_upfirdn2d", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        CudaRunner<scalar_t, acc_t> runner{stream};
        path = dispatch(p, runner);
    });
    return path;
}
#endif  // TOONLAB_CPU_EMULATION

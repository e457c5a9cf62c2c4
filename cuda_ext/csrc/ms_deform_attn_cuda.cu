// CUDA kernels (forward and backward) of avs_ext::ms_deform_attn.
// float32, float64, float16 and bfloat16; half-precision types accumulate in float32.
// Any batch size: one thread per output element (forward) or per sampling point (backward).
#include "ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace avs {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535 * 8));
}

// One thread per (n, q, m, channel): threads of a warp read consecutive channels of one value row.
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                               const scalar_t* __restrict__ attn, scalar_t* __restrict__ out, Dims d) {
  const int64_t total = d.N * d.Lq * d.M * d.D;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t ch = i % d.D;
    const int64_t idx = i / d.D;  // (n, q, m)
    const int64_t m = idx % d.M;
    const int64_t n = idx / (d.M * d.Lq);
    acc_t acc = 0;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
      const scalar_t* level = value + ((n * d.S + starts[l]) * d.M + m) * d.D + ch;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t sample = (idx * d.L + l) * d.P + p;
        const acc_t x = static_cast<acc_t>(loc[2 * sample]), y = static_cast<acc_t>(loc[2 * sample + 1]);
        const Corners<acc_t> c(y * height - acc_t(0.5), x * width - acc_t(0.5), height, width);
        if (!c.any) continue;
        const acc_t a = static_cast<acc_t>(attn[sample]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.valid[k]) acc += a * c.weight[k] * static_cast<acc_t>(level[(c.row[k] * width + c.col[k]) * d.M * d.D]);
        }
      }
    }
    out[i] = static_cast<scalar_t>(acc);
  }
}

// One thread per sampling point (n, q, m, l, p): it owns that point's location and weight gradients and
// scatters the value gradient with atomics into an op-math (float/double) buffer.
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                                const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
                                acc_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                                scalar_t* __restrict__ grad_attn, Dims d) {
  const int64_t total = d.N * d.Lq * d.M * d.L * d.P;
  for (int64_t sample = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; sample < total;
       sample += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t l = (sample / d.P) % d.L;
    const int64_t idx = sample / (d.P * d.L);  // (n, q, m)
    const int64_t m = idx % d.M;
    const int64_t n = idx / (d.M * d.Lq);
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const int64_t level_offset = ((n * d.S + starts[l]) * d.M + m) * d.D;
    const acc_t x = static_cast<acc_t>(loc[2 * sample]), y = static_cast<acc_t>(loc[2 * sample + 1]);
    const acc_t a = static_cast<acc_t>(attn[sample]);
    const Corners<acc_t> c(y * height - acc_t(0.5), x * width - acc_t(0.5), height, width);
    acc_t g_attn = 0, g_h = 0, g_w = 0;
    if (c.any) {
      const scalar_t* g = grad_out + idx * d.D;
      for (int k = 0; k < 4; ++k) {
        if (!c.valid[k]) continue;
        const int64_t offset = level_offset + (c.row[k] * width + c.col[k]) * d.M * d.D;
        const acc_t cw = a * c.weight[k];
        acc_t dot = 0;
        for (int64_t ch = 0; ch < d.D; ++ch) {
          const acc_t go = static_cast<acc_t>(g[ch]);
          dot += go * static_cast<acc_t>(value[offset + ch]);
          gpuAtomicAdd(grad_value + offset + ch, cw * go);
        }
        g_attn += c.weight[k] * dot;
        g_h += c.d_h[k] * dot;
        g_w += c.d_w[k] * dot;
      }
    }
    grad_attn[sample] = static_cast<scalar_t>(g_attn);
    grad_loc[2 * sample] = static_cast<scalar_t>(a * g_w * width);
    grad_loc[2 * sample + 1] = static_cast<scalar_t>(a * g_h * height);
  }
}

}  // namespace

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value_in, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& locations_in,
                                       const at::Tensor& weights_in) {
  const c10::cuda::CUDAGuard guard(value_in.device());
  const Prepared in =
      prepare(value_in, spatial_shapes, level_start_index, locations_in, weights_in, value_in.device());
  const Dims d = in.d;
  const at::Tensor &value = in.value, &locations = in.locations, &weights = in.weights;
  const at::Tensor &shapes = in.shapes, &starts = in.starts;
  at::Tensor output = at::empty({d.N, d.Lq, d.M, d.D}, value.options());
  const int64_t work = output.numel();
  if (work == 0) return output.view({d.N, d.Lq, d.M * d.D});
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<blocks_for(work), kThreads, 0, stream>>>(
        value.const_data_ptr<scalar_t>(), shapes.const_data_ptr<int64_t>(), starts.const_data_ptr<int64_t>(),
        locations.const_data_ptr<scalar_t>(), weights.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
        d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output.view({d.N, d.Lq, d.M * d.D});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output_in, const at::Tensor& value_in, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& locations_in, const at::Tensor& weights_in) {
  const c10::cuda::CUDAGuard guard(value_in.device());
  const Prepared in =
      prepare(value_in, spatial_shapes, level_start_index, locations_in, weights_in, value_in.device());
  const Dims d = in.d;
  check_grad_output(grad_output_in, d);
  const at::Tensor grad_output = grad_output_in.to(in.value.scalar_type()).contiguous();
  const at::Tensor &value = in.value, &locations = in.locations, &weights = in.weights;
  const at::Tensor &shapes = in.shapes, &starts = in.starts;
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type())));
  at::Tensor grad_locations = at::empty_like(locations);
  at::Tensor grad_weights = at::empty_like(weights);
  const int64_t work = weights.numel();
  if (work > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<blocks_for(work), kThreads, 0, stream>>>(
          grad_output.const_data_ptr<scalar_t>(), value.const_data_ptr<scalar_t>(), shapes.const_data_ptr<int64_t>(),
          starts.const_data_ptr<int64_t>(), locations.const_data_ptr<scalar_t>(), weights.const_data_ptr<scalar_t>(),
          grad_value.mutable_data_ptr<acc_t>(), grad_locations.mutable_data_ptr<scalar_t>(),
          grad_weights.mutable_data_ptr<scalar_t>(), d);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace avs

TORCH_LIBRARY_IMPL(avs_ext, CUDA, m) {
  m.impl("ms_deform_attn", &avs::ms_deform_attn_forward_cuda);
  m.impl("ms_deform_attn_backward", &avs::ms_deform_attn_backward_cuda);
}

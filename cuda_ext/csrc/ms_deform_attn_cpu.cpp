// CPU kernels (forward and backward) and the operator schema of avs_ext::ms_deform_attn.
#include "ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace avs {

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value_in, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& locations_in,
                                      const at::Tensor& weights_in) {
  const Prepared in = prepare(value_in, spatial_shapes, level_start_index, locations_in, weights_in, at::kCPU);
  const Dims d = in.d;
  const at::Tensor &value = in.value, &locations = in.locations, &weights = in.weights;
  const at::Tensor &shapes = in.shapes, &starts = in.starts;
  at::Tensor output = at::empty({d.N, d.Lq, d.M, d.D}, value.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* v = value.const_data_ptr<scalar_t>();
    const scalar_t* loc = locations.const_data_ptr<scalar_t>();
    const scalar_t* attn = weights.const_data_ptr<scalar_t>();
    const int64_t* hw = shapes.const_data_ptr<int64_t>();
    const int64_t* start = starts.const_data_ptr<int64_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();

    at::parallel_for(0, d.N * d.Lq * d.M, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(d.D);
      for (int64_t idx = begin; idx < end; ++idx) {
        const int64_t m = idx % d.M;
        const int64_t n = idx / (d.M * d.Lq);
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t l = 0; l < d.L; ++l) {
          const int64_t height = hw[2 * l], width = hw[2 * l + 1];
          const scalar_t* level = v + ((n * d.S + start[l]) * d.M + m) * d.D;
          for (int64_t p = 0; p < d.P; ++p) {
            const int64_t sample = (idx * d.L + l) * d.P + p;  // idx enumerates (n, q, m)
            const acc_t x = static_cast<acc_t>(loc[2 * sample]), y = static_cast<acc_t>(loc[2 * sample + 1]);
            const acc_t a = static_cast<acc_t>(attn[sample]);
            const Corners<acc_t> c(y * height - acc_t(0.5), x * width - acc_t(0.5), height, width);
            if (!c.any) continue;
            for (int k = 0; k < 4; ++k) {
              if (!c.valid[k]) continue;
              const acc_t cw = a * c.weight[k];
              const scalar_t* src = level + (c.row[k] * width + c.col[k]) * d.M * d.D;
              for (int64_t ch = 0; ch < d.D; ++ch) acc[ch] += cw * static_cast<acc_t>(src[ch]);
            }
          }
        }
        scalar_t* dst = out + idx * d.D;
        for (int64_t ch = 0; ch < d.D; ++ch) dst[ch] = static_cast<scalar_t>(acc[ch]);
      }
    });
  });
  return output.view({d.N, d.Lq, d.M * d.D});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output_in, const at::Tensor& value_in, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& locations_in, const at::Tensor& weights_in) {
  const Prepared in = prepare(value_in, spatial_shapes, level_start_index, locations_in, weights_in, at::kCPU);
  const Dims d = in.d;
  check_grad_output(grad_output_in, d);
  const at::Tensor grad_output = grad_output_in.to(in.value.scalar_type()).contiguous();
  const at::Tensor &value = in.value, &locations = in.locations, &weights = in.weights;
  const at::Tensor &shapes = in.shapes, &starts = in.starts;
  const auto acc_type = at::toOpMathType(value.scalar_type());
  // accumulate in the op-math type (float for half/bfloat16), cast at the end
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(acc_type));
  at::Tensor grad_locations = at::zeros(locations.sizes(), value.options().dtype(acc_type));
  at::Tensor grad_weights = at::zeros(weights.sizes(), value.options().dtype(acc_type));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* v = value.const_data_ptr<scalar_t>();
    const scalar_t* loc = locations.const_data_ptr<scalar_t>();
    const scalar_t* attn = weights.const_data_ptr<scalar_t>();
    const scalar_t* gout = grad_output.const_data_ptr<scalar_t>();
    const int64_t* hw = shapes.const_data_ptr<int64_t>();
    const int64_t* start = starts.const_data_ptr<int64_t>();
    acc_t* gv = grad_value.mutable_data_ptr<acc_t>();
    acc_t* gloc = grad_locations.mutable_data_ptr<acc_t>();
    acc_t* gattn = grad_weights.mutable_data_ptr<acc_t>();

    // One task per (n, m): every write below touches only that batch item's head, so no two tasks
    // ever write the same element and no atomics are needed.
    at::parallel_for(0, d.N * d.M, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nm = begin; nm < end; ++nm) {
        const int64_t n = nm / d.M, m = nm % d.M;
        for (int64_t q = 0; q < d.Lq; ++q) {
          const int64_t idx = (n * d.Lq + q) * d.M + m;
          const scalar_t* g = gout + idx * d.D;
          for (int64_t l = 0; l < d.L; ++l) {
            const int64_t height = hw[2 * l], width = hw[2 * l + 1];
            const int64_t level_offset = ((n * d.S + start[l]) * d.M + m) * d.D;
            for (int64_t p = 0; p < d.P; ++p) {
              const int64_t sample = (idx * d.L + l) * d.P + p;
              const acc_t x = static_cast<acc_t>(loc[2 * sample]), y = static_cast<acc_t>(loc[2 * sample + 1]);
              const acc_t a = static_cast<acc_t>(attn[sample]);
              const Corners<acc_t> c(y * height - acc_t(0.5), x * width - acc_t(0.5), height, width);
              if (!c.any) continue;
              acc_t g_attn = 0, g_h = 0, g_w = 0;
              for (int k = 0; k < 4; ++k) {
                if (!c.valid[k]) continue;
                const int64_t offset = level_offset + (c.row[k] * width + c.col[k]) * d.M * d.D;
                const scalar_t* src = v + offset;
                acc_t* dst = gv + offset;
                acc_t dot = 0;
                const acc_t cw = a * c.weight[k];
                for (int64_t ch = 0; ch < d.D; ++ch) {
                  const acc_t go = static_cast<acc_t>(g[ch]);
                  dot += go * static_cast<acc_t>(src[ch]);
                  dst[ch] += cw * go;
                }
                g_attn += c.weight[k] * dot;
                g_h += c.d_h[k] * dot;
                g_w += c.d_w[k] * dot;
              }
              gattn[sample] = g_attn;
              gloc[2 * sample] = a * g_w * width;       // d(w_pixel)/dx = W
              gloc[2 * sample + 1] = a * g_h * height;  // d(h_pixel)/dy = H
            }
          }
        }
      }
    });
  });
  const auto dtype = value.scalar_type();
  return {grad_value.to(dtype), grad_locations.to(dtype), grad_weights.to(dtype)};
}

}  // namespace avs

TORCH_LIBRARY(avs_ext, m) {
  m.def("ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
        "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def("ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
        "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(avs_ext, CPU, m) {
  m.impl("ms_deform_attn", &avs::ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_backward", &avs::ms_deform_attn_backward_cpu);
}

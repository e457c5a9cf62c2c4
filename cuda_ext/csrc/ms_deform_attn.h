// Multi-scale deformable attention: shared shape checks and the bilinear sampling rule.
//
// value              [N, S, M, D]   S = sum over levels of H_l * W_l
// spatial_shapes     [L, 2]         (H_l, W_l), int64
// level_start_index  [L]            offset of each level in S, int64
// sampling_locations [N, Lq, M, L, P, 2]  (x, y) in [0, 1] (outside is allowed: zero padding)
// attention_weights  [N, Lq, M, L, P]
// output             [N, Lq, M * D]
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <tuple>

namespace avs {

struct Dims {
  int64_t N, S, M, D, Lq, L, P;
};

inline Dims check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                         const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be [N, S, M, D], got ", value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be [N, Lq, M, L, P, 2], got ", sampling_locations.sizes());
  TORCH_CHECK(attention_weights.dim() == 5, "ms_deform_attn: attention_weights must be [N, Lq, M, L, P], got ",
              attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be [L, 2], got ", spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
              "ms_deform_attn: level_start_index must be [L] with L = ", spatial_shapes.size(0));
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_locations and attention_weights must share a dtype, got ",
              value.scalar_type(), ", ", sampling_locations.scalar_type(), ", ", attention_weights.scalar_type());
  TORCH_CHECK(sampling_locations.device() == value.device() && attention_weights.device() == value.device(),
              "ms_deform_attn: inputs must be on one device");
  Dims d{value.size(0), value.size(1), value.size(2), value.size(3),
         sampling_locations.size(1), sampling_locations.size(3), sampling_locations.size(4)};
  TORCH_CHECK(sampling_locations.size(0) == d.N && sampling_locations.size(2) == d.M,
              "ms_deform_attn: sampling_locations batch/heads do not match value");
  TORCH_CHECK(spatial_shapes.size(0) == d.L, "ms_deform_attn: sampling_locations has ", d.L,
              " levels but spatial_shapes has ", spatial_shapes.size(0));
  TORCH_CHECK(attention_weights.size(0) == d.N && attention_weights.size(1) == d.Lq &&
                  attention_weights.size(2) == d.M && attention_weights.size(3) == d.L &&
                  attention_weights.size(4) == d.P,
              "ms_deform_attn: attention_weights ", attention_weights.sizes(), " do not match sampling_locations ",
              sampling_locations.sizes());
  return d;
}

// Checked, contiguous inputs, with the index tensors as int64 on `index_device`.
struct Prepared {
  Dims d;
  at::Tensor value, locations, weights, shapes, starts;
};

inline Prepared prepare(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                        const at::Tensor& locations, const at::Tensor& weights, const at::Device& index_device) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index, locations, weights);
  return {d, value.contiguous(), locations.contiguous(), weights.contiguous(),
          spatial_shapes.to(index_device, at::kLong).contiguous(),
          level_start_index.to(index_device, at::kLong).contiguous()};
}

inline void check_grad_output(const at::Tensor& grad_output, const Dims& d) {
  TORCH_CHECK(grad_output.numel() == d.N * d.Lq * d.M * d.D, "ms_deform_attn_backward: grad_output has ",
              grad_output.numel(), " elements, expected N * Lq * M * D = ", d.N * d.Lq * d.M * d.D);
}

// The four bilinear neighbours of (h, w) in pixel units (align_corners=False: h = y * H - 0.5).
// For each corner: row, column, interpolation weight, and the weight's derivatives by h and by w.
template <typename acc_t>
struct Corners {
  int64_t row[4], col[4];
  acc_t weight[4], d_h[4], d_w[4];
  bool valid[4];
  bool any;

#if defined(__CUDACC__)
  __host__ __device__
#endif
  Corners(acc_t h, acc_t w, int64_t height, int64_t width) {
    any = h > acc_t(-1) && w > acc_t(-1) && h < acc_t(height) && w < acc_t(width);
    const acc_t h_floor = floor(h), w_floor = floor(w);
    const int64_t h_low = static_cast<int64_t>(h_floor), w_low = static_cast<int64_t>(w_floor);
    const acc_t lh = h - h_floor, lw = w - w_floor, hh = acc_t(1) - lh, hw = acc_t(1) - lw;
    const int64_t rows[4] = {h_low, h_low, h_low + 1, h_low + 1};
    const int64_t cols[4] = {w_low, w_low + 1, w_low, w_low + 1};
    const acc_t weights[4] = {hh * hw, hh * lw, lh * hw, lh * lw};
    const acc_t dh[4] = {-hw, -lw, hw, lw};
    const acc_t dw[4] = {-hh, hh, -lh, lh};
    for (int c = 0; c < 4; ++c) {
      row[c] = rows[c];
      col[c] = cols[c];
      weight[c] = weights[c];
      d_h[c] = dh[c];
      d_w[c] = dw[c];
      valid[c] = any && rows[c] >= 0 && rows[c] < height && cols[c] >= 0 && cols[c] < width;
    }
  }
};

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

}  // namespace avs

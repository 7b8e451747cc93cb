// Autograd of dice_loss, device independent (the torchvision layout:
// csrc/ops/autograd/).
//
// Why in C++ and not torch.library.register_autograd: at the book's 2D
// segmentation batch (16 x 64x64) the whole fused forward + backward takes
// ~20 us, and a Python autograd.Function costs about as much again per call;
// here the glue is a C++ node, and the C++ program gets the gradient too.
//
// Forward: _dice_loss_forward gives the loss and the per-sample sums in one
// pass; the sums (N,4) are all the backward needs besides the label, so
// the backward (_dice_loss_backward) is one elementwise pass as well.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <tuple>

namespace torchlite {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> call_forward(const at::Tensor& pred,
                                                const at::Tensor& label,
                                                double eps, double fn_weight) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("torchlite::_dice_loss_forward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, double, double)>();
  return op.call(pred, label, eps, fn_weight);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& sums,
                         const at::Tensor& label, double eps, double fn_weight,
                         at::ScalarType dtype) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("torchlite::_dice_loss_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, double, double,
                            at::ScalarType)>();
  return op.call(grad, sums, label, eps, fn_weight, dtype);
}

class DiceLossFunction : public torch::autograd::Function<DiceLossFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& pred,
                            const at::Tensor& label, double eps,
                            double fn_weight) {
    // Labels are targets; a silently missing gradient would be worse than
    // this error.
    TORCH_CHECK(!label.requires_grad(),
                "torchlite.dice_loss: the gradient with respect to `label` "
                "is not implemented; pass label.detach()");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, sums] = call_forward(pred, label, eps, fn_weight);
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["fn_weight"] = fn_weight;
    ctx->saved_data["dtype"] = static_cast<int64_t>(pred.scalar_type());
    // pred only to hang the double-backward error on (below).
    ctx->save_for_backward({sums, label, pred});
    return loss;
  }

  static variable_list backward(AutogradContext* ctx,
                                variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& sums = saved[0];
    const at::Tensor& label = saved[1];
    const at::Tensor& pred = saved[2];
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_pred;
    if (ctx->needs_input_grad(0) && grad.defined()) {
      {
        at::AutoDispatchBelowADInplaceOrView guard;
        grad_pred = call_backward(
            grad, sums, label, ctx->saved_data["eps"].toDouble(),
            ctx->saved_data["fn_weight"].toDouble(),
            static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt()));
      }
      // create_graph=True: the fused kernel has no derivative of its own,
      // so differentiating its result must fail loudly (the C++ twin of
      // Python's @once_differentiable), never return a partial answer.
      if (at::GradMode::is_enabled() &&
          (grad.requires_grad() || pred.requires_grad())) {
        auto err = c10::make_intrusive<torch::autograd::Error>(
            "torchlite.dice_loss: double backward (differentiating the "
            "gradient) is not supported",
            torch::autograd::collect_next_edges(grad, pred));
        torch::autograd::set_history(grad_pred, err);
      }
    }
    return {grad_pred, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor dice_loss_autograd(const at::Tensor& pred, const at::Tensor& label,
                              double eps, double fn_weight) {
  return DiceLossFunction::apply(pred, label, eps, fn_weight);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, Autograd, m) {
  m.impl("dice_loss", &dice_loss_autograd);
}

}  // namespace torchlite

"""SVF's layer-level pieces (a leaf module, like ``lora_dash_layer``): the factored product with its own backward,
and the module that replaces an adapted ``nn.Linear``.

Singular Value Fine-tuning (Sun, Cetin, Tang 2025, Transformer², Eq. 1): with the reduced SVD W = U Σ Vᵀ of a frozen
weight (k = min(d_out, d_in), σ = diag Σ) and one vector z ∈ R^k per matrix,

    W' = U diag(σ ⊙ z) Vᵀ,        y = W' x + b = U ((σ ⊙ z) ⊙ (Vᵀ x)) + b.

The product is never formed densely: :class:`SVFMatmul` computes y = U (s ⊙ (Vᵀ x)) for a scale vector s, and its
backward reuses g_h = Uᵀ g for both ∂L/∂x = V (s ⊙ g_h) and ∂L/∂s = Σ_batch g_h ⊙ (Vᵀ x). The mapping from the
trainable vector to s (paper: s = σ ⊙ z; official: z = sigmoid(p)·max_mult and s rescaled so that Σ s = Σ σ) is
ordinary autograd on k-vectors in :meth:`SVFLinear.scale`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

Z, U_BUF, S_BUF, VH_BUF = "svf_z", "svf_U", "svf_S", "svf_Vh"
MAPPINGS = ("identity", "sigmoid")


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or as it is when wider (float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class SVFMatmul(torch.autograd.Function):
    """y = U (s ⊙ (Vᵀ x)) over the last dimension of x, with a factored backward.

    Inputs: x (..., d_in), U (d_out, k), s (k,), Vh = Vᵀ (k, d_in), all of one dtype (the caller casts). Saved for
    backward: h = Vᵀ x (N × k, never x itself), U, s, Vh (references, no copies). Backward, with g = ∂L/∂y:
    g_h = g U (= Uᵀ g per row), ∂L/∂s = Σ_rows g_h ⊙ h (accumulated in at least float32), ∂L/∂x = (g_h ⊙ s) Vh.
    U and Vh get no gradient (frozen).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        h = x2 @ Vh.mT                      # N × k: Vᵀ x
        y = (h * s) @ U.mT                  # N × d_out: U (s ⊙ h)
        ctx.save_for_backward(h, U, s, Vh)
        ctx.lead = lead
        return y.reshape(*lead, U.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        h, U, s, Vh = ctx.saved_tensors
        need_x, _, need_s, _ = ctx.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1])
        gh = g2 @ U                         # N × k: Uᵀ g, shared by both gradients
        ds = dx = None
        if need_s:
            acc = torch.promote_types(s.dtype, torch.float32)
            ds = (gh * h).sum(0, dtype=acc).to(s.dtype)
        if need_x:
            dx = (gh.mul_(s) @ Vh).reshape(*ctx.lead, Vh.shape[1])  # gh is not needed after this: in place
        return dx, None, ds, None


def svf_matmul(x: torch.Tensor, U: torch.Tensor, s: torch.Tensor, Vh: torch.Tensor) -> torch.Tensor:
    """y = U (s ⊙ (Vᵀ x)) via :class:`SVFMatmul` (all inputs of one dtype)."""
    return SVFMatmul.apply(x, U, s, Vh)


class SVFLinear(nn.Module):
    """Replaces an ``nn.Linear`` whose W = U diag(σ) Vᵀ: y = U (s ⊙ (Vᵀ x)) + b, W itself is not kept.

    Buffers (non-persistent: they are derived from the base model, never saved): ``svf_U`` (d_out × k), ``svf_S``
    (σ, k), ``svf_Vh`` (Vᵀ, k × d_in), in the replaced weight's dtype. Parameter ``svf_z`` (k, float32): the trainable
    vector p, mapped to the paper's z by ``mapping`` ("identity": z = p; "sigmoid": z = sigmoid(p)·``max_mult``, the
    official code's ``Policy.get_mask``). ``rescale``: multiply σ ⊙ z by Σσ / Σ(σ ⊙ z) (the official
    ``compose_new_params``). ``bias``: the replaced layer's bias, kept frozen.
    """

    def __init__(self, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor, bias: torch.Tensor | None,
                 z: torch.Tensor, mapping: str = "identity", max_mult: float = 1.0, rescale: bool = False):
        super().__init__()
        if mapping not in MAPPINGS:
            raise ValueError(f"SVF mapping '{mapping}' is not known; choose one of {list(MAPPINGS)}.")
        k = S.numel()
        if U.shape[1] != k or Vh.shape[0] != k or z.shape != (k,):
            raise ValueError(f"SVF factors do not fit: U {tuple(U.shape)}, σ {tuple(S.shape)}, Vᵀ {tuple(Vh.shape)}, "
                             f"z {tuple(z.shape)}.")
        self.out_features, self.in_features = int(U.shape[0]), int(Vh.shape[1])
        self.register_buffer(U_BUF, U, persistent=False)
        self.register_buffer(S_BUF, S, persistent=False)
        self.register_buffer(VH_BUF, Vh, persistent=False)
        setattr(self, Z, nn.Parameter(z.detach().to(torch.float32).clone()))
        if bias is not None:
            bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias)
            bias.requires_grad_(False)
        self.bias = bias
        self.mapping, self.max_mult, self.rescale = mapping, float(max_mult), bool(rescale)
        # True inside SVF.base_model_context: s = σ (z switched off), i.e. the base W = U diag(σ) Vᵀ.
        self.base_only = False

    def multipliers(self) -> torch.Tensor:
        """The paper's z (float32, or float64 for a float64 layer): p, or sigmoid(p)·max_mult."""
        p = at_least_fp32(getattr(self, Z))
        return p if self.mapping == "identity" else torch.sigmoid(p) * self.max_mult

    def scale(self) -> torch.Tensor:
        """s = σ ⊙ z, times Σσ / Σ(σ ⊙ z) when ``rescale`` (at least float32, differentiable in z); s = σ (the base
        weight, no dependence on z) while ``base_only`` is set."""
        sigma = at_least_fp32(getattr(self, S_BUF))
        if self.base_only:
            return sigma
        s = sigma * self.multipliers()
        if self.rescale:
            s = s * (sigma.sum() / s.sum())
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        U, Vh = getattr(self, U_BUF), getattr(self, VH_BUF)
        dt = x.dtype
        if torch.is_autocast_enabled(x.device.type):  # compute as an autocast nn.Linear would, then run pure
            dt = torch.get_autocast_dtype(x.device.type)
        s = self.scale()
        with torch.autocast(x.device.type, enabled=False):
            y = svf_matmul(x.to(dt), U.to(dt), s.to(dt), Vh.to(dt))
            if self.bias is not None:
                y = y + self.bias.to(dt)
        return y

    @torch.no_grad()
    def dense_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """W' = U diag(s) Vᵀ computed in (at least) float32, for the merged export and checks; never in training."""
        U, Vh = at_least_fp32(getattr(self, U_BUF)), at_least_fp32(getattr(self, VH_BUF))
        return ((U * self.scale().to(device=U.device, dtype=U.dtype)) @ Vh).to(dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, k={getattr(self, S_BUF).numel()}, "
                f"mapping={self.mapping}, max_mult={self.max_mult}, rescale={self.rescale}, "
                f"bias={self.bias is not None}")

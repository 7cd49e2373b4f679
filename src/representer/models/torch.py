"""Adapter for a PyTorch classifier whose last operation is an ``nn.Linear`` head.

``φ(x)`` is captured with a forward pre-hook on the head: it is exactly the tensor the head
receives, flattened to ``(batch, D)``. Features are computed in eval mode under ``no_grad``, in
batches, with an optional progress bar, and cached by a content hash of the input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._progress import progress_bar
from .._validation import check_device, to_tensor
from ..errors import InputError, ModelError
from .._files import array_fingerprint
from .base import ClassifierAdapter

_CACHE_SIZE = 4


class TorchClassifier(ClassifierAdapter):
    """Split ``net`` into features and its linear head.

    Inputs to :meth:`features` may be a numpy array, a tensor, a DataFrame, a dict of arrays (text
    batches: each batch is passed to ``net`` as one dict), a ``Dataset`` (items ``x`` or
    ``(x, y, ...)``) or a ``DataLoader``.

    Parameters
    ----------
    net : nn.Module
        The classifier. Its head must be an ``nn.Linear`` whose output is the logits.
    head : str, optional
        Dotted module name of the head (e.g. ``"classifier.2"``). By default the last ``nn.Linear``
        registered in ``net``; the first forward pass checks that it is also the last ``nn.Linear``
        applied, and asks for ``head=`` otherwise.
    device : str or torch.device, optional
        Where the forward passes run (default: the device of ``net``'s parameters).
    batch_size : int, default 256
        Rows per forward pass for array inputs.
    progress : bool, optional
        A progress bar over the batches while computing features (``None``: when standard error is a
        terminal; see :mod:`representer._progress`).

    Raises
    ------
    ModelError
        ``net`` is not an ``nn.Module``, has no ``nn.Linear``, or ``head`` names no ``nn.Linear``.
    """

    def __init__(
        self,
        net: nn.Module,
        head: str | None = None,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 256,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(net, nn.Module):
            raise ModelError(f"`net` must be a torch.nn.Module; got {type(net).__name__}.")
        self.net = net
        self.head_name, self.head = _resolve_head(net, head)
        self._head_checked = head is not None
        if device is None:
            first = next(iter(net.parameters()), None)
            device = first.device if first is not None else "cpu"
        self.device = check_device(device)
        self.batch_size = int(batch_size)
        self.progress = progress
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def weight(self) -> np.ndarray:  # type: ignore[override]
        """The head's weight, ``(K, D)`` float64 (read from the network each time)."""
        return self.head.weight.detach().cpu().to(torch.float64).numpy()

    @property
    def bias(self) -> np.ndarray:  # type: ignore[override]
        """The head's bias, ``(K,)`` float64 (zeros for a head without bias)."""
        if self.head.bias is None:
            return np.zeros(self.head.out_features)
        return self.head.bias.detach().cpu().to(torch.float64).numpy()

    @property
    def has_bias(self) -> bool:  # type: ignore[override]
        """Whether the head has a bias."""
        return self.head.bias is not None

    def parameter_hashes(self) -> dict[str, str]:
        """A hash of every parameter and buffer of the network (the body, not only the head), and the head's name.

        Returns
        -------
        dict of str to str
            State-dict key → hash, and ``"head"`` → the head's module name.
        """
        hashes = {name: tensor_fingerprint(t) for name, t in self.net.state_dict().items()}
        hashes["head"] = self.head_name
        return hashes

    def features(self, X: Any) -> np.ndarray:
        """φ(X): the tensor the head receives, flattened, computed in eval mode under ``no_grad``.

        Cached by input content for arrays and tensors (the last four inputs).

        Parameters
        ----------
        X : array, tensor, DataFrame, dict of arrays, Dataset or DataLoader of n inputs
            Rows first: one example is ``X[None]``.

        Returns
        -------
        ndarray of shape (n, D)
            float64 features.

        Raises
        ------
        ModelError
            ``net`` is in training mode, its output is not the head's logits, or its features are not finite.
        InputError
            ``X`` empty, 1-dimensional, non-numeric or with NaN, or of a shape the network fails on (one
            example without its batch dimension is named as such).
        """
        if self.net.training:
            raise ModelError(
                "`net` is in training mode, so dropout / batch-norm would make its features random; "
                "call `net.eval()` before explaining it."
            )
        key = _cache_key(X)
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        phi = self._compute(X)
        if key is not None:
            self._cache[key] = phi
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return phi

    def _compute(self, X: Any) -> np.ndarray:
        captured: list[torch.Tensor] = []
        order: list[nn.Module] = []

        def grab(_module: nn.Module, args: tuple) -> None:
            captured.append(args[0].detach().reshape(args[0].shape[0], -1).to("cpu", torch.float64))

        head_outputs: list[torch.Tensor] = []
        dtype = self.head.weight.dtype
        handles = [self.head.register_forward_pre_hook(grab)]
        if not self._head_checked:
            handles += [
                m.register_forward_pre_hook(lambda mod, _a: order.append(mod))
                for m in self.net.modules()
                if isinstance(m, nn.Linear)
            ]
            handles.append(self.head.register_forward_hook(lambda _m, _a, out: head_outputs.append(out)))
        try:
            with torch.no_grad():
                for k, batch in enumerate(_iterate_batches(X, self.batch_size, self.progress)):
                    output = self._forward(_to_device(batch, self.device, dtype), first=k == 0)
                    if not self._head_checked:
                        self._check_head_is_last(order)
                        self._check_output_is_head(output, head_outputs[-1])
                        self._head_checked = True
        finally:
            for h in handles:
                h.remove()
        if not captured:
            raise InputError("`X` produced no batches; pass at least one example.")
        phi = torch.cat(captured).numpy()
        if phi.shape[1] != self.head.in_features:
            raise ModelError(
                f"The head received {phi.shape[1]} features but has in_features={self.head.in_features}. If `X` is a "
                "single example, add the batch dimension: X[None]."
            )
        if not np.all(np.isfinite(phi)):
            raise ModelError("The network produced NaN or infinite features; check the inputs and the weights.")
        return phi

    def _forward(self, batch: Any, *, first: bool = False) -> Any:
        """Run ``net`` on one batch and return its output; a shape or dtype mismatch is reported as a bad ``X``.

        If the first batch fails but the network accepts it with one more leading axis, ``X`` is one
        example without its batch dimension, and the error says so.
        """
        try:
            return self.net(batch)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            if first and self._accepts(batch):
                raise InputError(
                    f"`X` looks like a single example without its batch dimension (shape {tuple(batch.shape)}): the "
                    f"network fails on it but accepts shape {(1, *batch.shape)}. Pass X[None] (inputs are rows first)."
                ) from exc
            raise InputError(
                f"The network failed on a batch of `X` ({_describe(batch)}): {exc}. Pass `X` with the shape and "
                "dtype the network's forward expects (rows first)."
            ) from exc

    def _accepts(self, batch: Any) -> bool:
        """Whether ``net`` runs on ``batch`` with a leading axis added (one forward pass, on the error path only)."""
        if not isinstance(batch, torch.Tensor) or batch.ndim < 2:
            return False
        try:
            self.net(batch[None])
        except RuntimeError:
            return False
        return True

    def _check_head_is_last(self, order: list[nn.Module]) -> None:
        if order and order[-1] is not self.head:
            names = {m: n for n, m in self.net.named_modules()}
            raise ModelError(
                f"The last nn.Linear applied in forward is `{names.get(order[-1])}`, not `{self.head_name}`; "
                f"pass head='{names.get(order[-1])}' (or the name of the layer whose output is the logits)."
            )

    def _check_output_is_head(self, output: Any, head_output: torch.Tensor) -> None:
        """Refuse a net whose output is a non-linear function of the head's logits other than (log-)softmax/sigmoid.

        Every method decomposes the head's logits ``z``. A net that returns ``z``, ``softmax(z)``,
        ``log_softmax(z)`` or ``sigmoid(z)`` predicts from ``z``, so the decomposition describes it; a
        ReLU, a scaling or any other layer after the head does not. Outputs that are not a tensor of
        ``z``'s size (tuples, dicts) are not checked.
        """
        if not isinstance(output, torch.Tensor) or output.numel() != head_output.numel():
            return
        z = head_output.reshape(output.shape[0], -1).to(torch.float64)
        got = output.reshape(output.shape[0], -1).to(torch.float64)
        readings = [z, torch.softmax(z, dim=1), torch.log_softmax(z, dim=1)] if z.shape[1] > 1 else [z, torch.sigmoid(z)]
        if any(torch.allclose(got, r, rtol=1e-4, atol=1e-5) for r in readings):
            return
        raise ModelError(
            f"The network's output is not its head `{self.head_name}`'s logits (nor their softmax, log-softmax or "
            f"sigmoid): a layer after the head transforms them (largest difference {float((got - z).abs().max()):.3g}), so "
            "a linear decomposition of the head would not describe the network. Remove the layer after the head, "
            "or pass head= the last linear layer whose output the network returns."
        )


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    """A short content hash of a tensor: its dtype, shape and exact bytes (any dtype, any device)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
    return array_fingerprint(np.frombuffer(f"{tensor.dtype}{tuple(tensor.shape)}".encode(), np.uint8), data)


def _resolve_head(net: nn.Module, head: str | None) -> tuple[str, nn.Linear]:
    if head is not None:
        try:
            module = net.get_submodule(head)
        except AttributeError as exc:
            raise ModelError(f"`head={head!r}` is not a submodule of the network ({exc}).") from exc
        if not isinstance(module, nn.Linear):
            raise ModelError(
                f"`head={head!r}` is a {type(module).__name__}, not an nn.Linear; representer explains linear "
                "heads only. Point `head` at the nn.Linear that produces the logits."
            )
        return head, module
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(
            "The network has no nn.Linear layer, so it has no linear head to explain. Wrap your features and "
            "head in `representer.Features`, or add an nn.Linear classifier."
        )
    return linears[-1]


def _cache_key(X: Any) -> str | None:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray):
        return array_fingerprint(X)
    if isinstance(X, Mapping) and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in X.values()):
        return array_fingerprint(*[np.asarray(v) if isinstance(v, np.ndarray) else v.cpu().numpy() for v in X.values()])
    return None


def _iterate_batches(X: Any, batch_size: int, progress: bool | None) -> Iterator[Any]:
    batches: Iterable[Any]
    if isinstance(X, DataLoader):
        batches = (_first_item(b) for b in X)
        total = len(X) if hasattr(X, "__len__") else None
    elif isinstance(X, Dataset):
        loader = DataLoader(X, batch_size=batch_size, shuffle=False)
        batches = (_first_item(b) for b in loader)
        total = len(loader)
    elif isinstance(X, Mapping):
        arrays = {k: v if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in X.items()}
        n = _common_length(arrays)
        batches = ({k: to_tensor(v[s : s + batch_size]) for k, v in arrays.items()} for s in range(0, n, batch_size))
        total = -(-n // batch_size)
    else:
        array = X if isinstance(X, torch.Tensor) else np.asarray(X)
        if isinstance(array, np.ndarray) and array.dtype.kind not in "fiub":
            raise InputError(f"`X` must be numeric; got dtype {array.dtype}.")
        if array.ndim == 0 or array.shape[0] == 0:
            raise InputError(f"`X` is empty (shape {tuple(array.shape)}); pass at least one example.")
        if array.ndim == 1:
            raise InputError(
                f"`X` is 1-dimensional (shape {tuple(array.shape)}), but inputs are rows first: pass X[None] for a "
                "single example, or X[:, None] for a column of scalar inputs."
            )
        if not _finite(array):
            raise InputError("`X` contains NaN or infinite values; clean or impute them first.")
        batches = (to_tensor(array[s : s + batch_size]) for s in range(0, array.shape[0], batch_size))
        total = -(-array.shape[0] // batch_size)
    return progress_bar(batches, desc="features", total=total, progress=progress if total is None or total > 1 else False)


def _finite(array: np.ndarray | torch.Tensor) -> bool:
    if isinstance(array, torch.Tensor):
        return not array.is_floating_point() or bool(torch.isfinite(array).all())
    return array.dtype.kind != "f" or bool(np.isfinite(array).all())


def _describe(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return f"shape {tuple(batch.shape)}, dtype {batch.dtype}"
    if isinstance(batch, Mapping):
        return ", ".join(f"{k}: {_describe(v)}" for k, v in batch.items())
    return type(batch).__name__


def _first_item(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _common_length(arrays: Mapping[str, Any]) -> int:
    lengths = {int(v.shape[0]) for v in arrays.values()}
    if len(lengths) != 1:
        raise InputError(f"Every array in a dict input must have the same number of rows; got lengths {sorted(lengths)}.")
    return lengths.pop()


def _to_device(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move tensors to ``device``; floating tensors also take the network's dtype."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, dtype) if batch.is_floating_point() else batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device, dtype) for k, v in batch.items()}
    return batch

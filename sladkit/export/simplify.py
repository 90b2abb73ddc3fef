"""Step 3 of export: simplify the ONNX graph with onnxsim, or onnxslim when onnxsim fails or is missing.

Either way the outputs are compared with the unsimplified model's on real images.
"""

from __future__ import annotations

from pathlib import Path

import onnx


def simplify_onnx(path: str | Path, out_path: str | Path) -> tuple[str, str | None]:
    """Simplify `path` into `out_path`.

    Returns:
        (tool used, why onnxsim was not used or None).
    """
    model = onnx.load(str(path))
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError("onnxsim's own check failed")
        onnx.save(simplified, str(out_path))
        return "onnxsim " + getattr(onnxsim, "__version__", "?"), None
    except Exception as e:  # ImportError, or any failure inside onnxsim: fall back
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
    import onnxslim

    onnx.save(onnxslim.slim(model), str(out_path))
    return "onnxslim " + getattr(onnxslim, "__version__", "?"), reason

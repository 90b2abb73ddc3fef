"""ONNX Runtime: CPU, and CUDA / TensorRT execution providers where this onnxruntime build has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sladkit.runtime.artifacts import INPUT, OUTPUT
from sladkit.runtime.backends.base import Backend, BackendError, add_blocks, layer_times, summarise_layers

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def session_options(threads: int | None = None, *, spinning: bool = True):
    """The options of every timed ONNX Runtime session: this backend's (`sladkit profile`, `eval`, `predict`)
    and export's timing of the CPU INT8 forms. Warnings off; ONNX Runtime's default thread pool, or `threads`
    intra-op threads and one inter-op thread. Thread spinning is left at ONNX Runtime's default (on) unless
    `spinning` is False: the threads spin between back-to-back runs, which is what a timed loop of one model
    and a deployed application see (the demo student at batch 1: 0.25 ms spinning, 0.35 ms not). Export's
    timing keeps it on too and lets each runtime's threads settle before it times the next model
    (`sladkit.export.cpu_timing.timed_turn`); `benchmarks/cpu_int8.py --no-spinning` turns it off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    artifact_kinds = ("bundle", "onnx")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed (pip install 'sladkit[runtime]')"
        return True, ""

    def _load(self) -> None:
        import onnxruntime as ort

        options = session_options(self.threads)
        available = ort.get_available_providers()
        providers = [p for p in PROVIDER_ORDER if p in available]
        try:
            self.session = ort.InferenceSession(str(self.artifact.model_file), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(
                f"ONNX Runtime cannot load {self.artifact.model_file}: {str(e).splitlines()[0]}"
            ) from None
        self.device = self.session.get_providers()[0].removesuffix("ExecutionProvider").lower()
        if self.artifact.kind == "bundle":
            self.check_against_manifest()

    def check_against_manifest(self) -> None:
        import json

        from sladkit.bundle import ORT_DTYPES, check_model_io

        meta = self.session.get_modelmeta().custom_metadata_map
        ports = [
            [(p.name, ORT_DTYPES.get(p.type, p.type), list(p.shape)) for p in group]
            for group in (self.session.get_inputs(), self.session.get_outputs())
        ]
        labels = json.loads(meta["labels"]) if "labels" in meta else None
        check_model_io(
            self.artifact.manifest, self.artifact.model_file, labels=labels, inputs=ports[0], outputs=ports[1]
        )

    def layer_profile(self, batch: np.ndarray, iterations: int = 20) -> list[dict]:
        """ONNX Runtime's own node profiler, on a separate session so the timed one is untouched."""
        import json
        import tempfile

        import onnxruntime as ort

        self.check_input(batch)
        with tempfile.TemporaryDirectory(prefix="sladkit-layers-") as tmp:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.enable_profiling = True
            options.profile_file_prefix = f"{tmp}/ort"
            if self.threads:
                options.intra_op_num_threads = self.threads
            session = ort.InferenceSession(
                str(self.artifact.model_file), options, providers=self.session.get_providers()
            )
            session.run([OUTPUT], {INPUT: batch})  # warm-up, excluded below
            for _ in range(iterations):
                session.run([OUTPUT], {INPUT: batch})
            events = json.loads(Path(session.end_profiling()).read_text())
        runs = [e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
        start_us = sorted(runs)[1] if len(runs) > 1 else None  # skip the warm-up run
        times, ops = layer_times()
        for e in events:
            if (
                e.get("cat") == "Node"
                and e["name"].endswith("_kernel_time")
                and (start_us is None or e["ts"] >= start_us)
            ):
                name = e["name"].removesuffix("_kernel_time")
                times[name].append(e["dur"] / 1e3)
                ops[name] = e.get("args", {}).get("op_name", "")
        # ONNX Runtime's own fused nodes are not in the file: no block for them
        return add_blocks(summarise_layers(times, ops, iterations), self.artifact.model_file)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: batch})[0]

    def close(self) -> None:
        self.session = None
        super().close()

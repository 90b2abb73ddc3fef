"""The training methods of `docs/method.md` ("Methods sladkit trains"), as data in a registry.

A method is a sequence of stages. Each stage says how the teacher and the student are trained in it
and which loss terms are on; the loop (`sladkit.train.loop`) reads it, nothing else branches on the
method's name.

Teacher modes: `lora` (adapters + head), `ft` (whole backbone + head), `probe` (head only),
`frozen` (forward only), `none` (not run). Student modes: `lora`, `ft`, `none`; `adapt` means the
user's `--student-adapt` (LoRA unless asked otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from sladkit.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    name: str
    teacher: str  # lora | ft | probe | frozen | none
    student: str  # lora | ft | adapt | none
    student_loss: bool = False
    teacher_loss: bool = False
    kd_loss: bool = False


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    teacher_adapter: bool  # the teacher gets LoRA adapters
    shared: bool  # the student's adapters share the teacher's (--share); else they are its own
    stages: tuple[Stage, ...]


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}: choose among {', '.join(METHODS)}")
    return METHODS[name]


_JOINT = Stage("joint", teacher="lora", student="lora", student_loss=True, teacher_loss=True, kd_loss=True)


def _two_stage(teacher: str) -> tuple[Stage, ...]:
    return (
        Stage("teacher", teacher=teacher, student="none", teacher_loss=True),
        Stage("student", teacher="frozen", student="adapt", student_loss=True, kd_loss=True),
    )


register_method(
    Method("slad", "one joint stage, student LoRA = slices of the teacher's", True, True, (_JOINT,))
)
register_method(
    Method("joint-lora", "one joint stage, separate LoRA (sharing ablation)", True, False, (_JOINT,))
)
register_method(
    Method(
        "slad-lp",
        "the teacher's head fitted alone first (--probe-epochs), then SLAD's joint stage (sladkit's variant)",
        True,
        True,
        (Stage("probe", teacher="probe", student="none", teacher_loss=True), _JOINT),
    )
)
register_method(
    Method("lora-kd", "teacher LoRA, then frozen; student LoRA + KD", True, False, _two_stage("lora"))
)
register_method(
    Method("ft-kd", "teacher fine-tuned, then frozen; student LoRA + KD", False, False, _two_stage("ft"))
)
register_method(
    Method("lp-kd", "teacher linear probe, then frozen; student LoRA + KD", False, False, _two_stage("probe"))
)
register_method(
    Method(
        "student-only",
        "student LoRA + head alone (teacher kept only for CKA)",
        False,
        False,
        (Stage("student", teacher="none", student="adapt", student_loss=True),),
    )
)

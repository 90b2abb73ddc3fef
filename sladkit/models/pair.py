"""The teacher/student pair of one training run: backbones, (shared) adapters and heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from sladkit.config import TrainConfig
from sladkit.models.adapters import LoraLinear, add_lora, add_shared_lora, layer_map
from sladkit.models.backbones import BackboneInfo, check_pair, create_backbone
from sladkit.models.heads import TaskModel, create_head


@dataclass(frozen=True)
class PairSpec:
    """What a run folder records about its models (saved in config.json under "models")."""

    teacher: BackboneInfo
    student: BackboneInfo
    layer_map: list[int]  # teacher block of each student block
    teacher_adapter: bool
    student_adapter: bool
    shared: bool

    def to_dict(self) -> dict:
        return asdict(self)


class TeacherStudent(nn.Module):
    """Both task models in one module, so every parameter (shared ones included) is registered once."""

    def __init__(self, teacher: TaskModel, student: TaskModel, spec: PairSpec) -> None:
        super().__init__()
        self.teacher = teacher
        self.student = student
        self.spec = spec

    def adapters(self, role: str) -> dict[str, LoraLinear]:
        """The role's LoRA layers, by module name within its backbone."""
        backbone = getattr(self, role).backbone
        return {n: m for n, m in backbone.named_modules() if isinstance(m, LoraLinear)}


def create_pair(
    config: TrainConfig,
    *,
    num_classes: int,
    image_size: int,
    teacher_adapter: bool,
    shared: bool,
    student_ft: bool,
) -> TeacherStudent:
    """Build the pair of a run. Pretrained or file weights are loaded; adapters start at ΔW = 0."""
    backbones = {}
    for role in ("teacher", "student"):
        backbones[role] = create_backbone(
            getattr(config, role),
            role=role,
            image_size=image_size,
            pretrained=config.pretrained,
            weights=getattr(config, f"{role}_weights"),
            kwargs=getattr(config, f"{role}_kwargs"),
        )
    info = {role: BackboneInfo.of(getattr(config, role), m) for role, m in backbones.items()}
    check_pair(info["teacher"], info["student"])
    mapping = layer_map(config.layer_map, info["student"].depth, info["teacher"].depth)

    lora = dict(targets=config.target_list, rank=config.rank, alpha=config.alpha, dropout=config.lora_dropout)
    teacher_adapters = add_lora(backbones["teacher"], **lora) if teacher_adapter else {}
    if student_ft:
        pass  # the student's whole backbone is trained; no adapters
    elif shared and config.share != "none":
        add_shared_lora(backbones["student"], teacher_adapters, share=config.share, mapping=mapping, **lora)
    else:
        add_lora(backbones["student"], **lora)

    models = {}
    for role, backbone in backbones.items():
        grid = backbone.patch_embed.grid_size
        head = create_head(
            config.task,
            info[role].width,
            num_classes,
            num_prefix=info[role].num_prefix_tokens,
            grid=grid,
            pool=config.pool,
        )
        models[role] = TaskModel(backbone, head, pool=config.pool)
    spec = PairSpec(
        teacher=info["teacher"],
        student=info["student"],
        layer_map=mapping,
        teacher_adapter=teacher_adapter,
        student_adapter=not student_ft,
        shared=shared and config.share != "none" and not student_ft,
    )
    return TeacherStudent(models["teacher"], models["student"], spec)

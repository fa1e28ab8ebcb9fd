"""Published ImageNet-1k top-1 of the UniConvNet variants and of timm peers, each with its source.

The frontier tool (:mod:`uniconvnet.speed.frontier`) places measured speed and memory against these numbers.
Every entry names the exact timm weights its accuracy belongs to (``timm.create_model(f'{model}.{tag}')``), the
image size the accuracy was measured at and where the number comes from. Speed does not depend on the weights:
the frontier tool builds the architecture ``model`` with random weights and times it at its own image size (224
by default).

Only checkpoints trained on ImageNet-1k alone are listed. Two kinds are shown but never chosen as "the fastest peer
at least as accurate" (:attr:`Published.excluded`): weights trained with knowledge distillation (a teacher model,
marked ``distilled``), and accuracies published only at another test size than 224 (timm's tables quote many
models at 256-320, which would flatter a model timed at 224).

Sources, in order of preference: timm's ``results/results-imagenet.csv`` (the row: model name with its pretrained
tag, img_size, top1; the stored copy is huggingface/pytorch-image-models@0173a13, which predates the newer
families); the result tables of timm's README release notes (the same validation, per tag and image size;
huggingface/pytorch-image-models@015ac30); the official repository of the model, whose released checkpoints timm
ported under the tag named. ``efficientvit_b0`` is left out: no top-1 of its checkpoint was found in these sources
(pass it as ``efficientvit_b0=TOP1`` to measure it).
"""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from ..models import check_model_name

__all__ = ['DEFAULT_PEERS', 'DEFAULT_VARIANTS', 'PEERS', 'PUBLISHED_SIZE', 'UNICONVNET', 'Published', 'matchable_top1', 'resolve_peers',
           'resolve_variants']

# the test size every top-1 is compared at; an accuracy published only at another size is shown, not matched
PUBLISHED_SIZE = 224

_UNICONVNET_README = 'official UniConvNet README, "ImageNet-1K trained models" table (acc@1, 224x224)'
_CONVNEXT_README = 'official ConvNeXt README, "ImageNet-1K trained models" table (acc@1, 224x224); ' \
                   'timm\'s fb_in1k weights are these checkpoints'
_TIMM_NEWS = 'timm README release notes ({date}): "{model} - {top1} @ 224"'
_TIMM_CSV = ('timm results/results-imagenet.csv (huggingface/pytorch-image-models@0173a13) row: '
             '{model}.{tag}, img_size {img_size}, top1 {top1}')
_TIMM_README = ('timm README.md (huggingface/pytorch-image-models@015ac30), release notes of {date}, results table '
                'row: {model}.{tag}, img_size {img_size}, top1 {top1}')
_CONVNEXTV2_README = ('official ConvNeXt-V2 README (facebookresearch/ConvNeXt-V2@1e48272), "ImageNet-1K fine-tuned '
                      'models" table (acc@1, 224x224; FCMAE pre-training on ImageNet-1k); timm\'s fcmae_ft_in1k '
                      'weights are these checkpoints')
_EFFICIENTVIT_README = ('official EfficientViT classification README (mit-han-lab/efficientvit@7c004eb, '
                        'applications/efficientvit_cls/README.md), "ImageNet Top1 Acc" at 224x224; timm\'s '
                        'r224_in1k weights are these checkpoints')
_MOBILEONE_README = ('official ml-mobileone README table (apple/ml-mobileone, not in the stored index; quoted by '
                     'yakhyo/mobileone-inference@00e5688 README.md, "Top-1 Acc."), 224x224; timm\'s apple_in1k '
                     'weights are these checkpoints')
_FASTVIT_README = ('official FastViT README (apple/ml-fastvit@8af5928), "Models trained on ImageNet-1K" table; '
                   'trained and evaluated at 256x256 (the input size of timm\'s apple_in1k weights)')
_REPVIT_README = ('official RepViT README (THU-MIG/RepViT@298f420), "Top-1 (300 / 450)" column, the 450-epoch value; '
                  'trained with knowledge distillation (timm tag dist_450e_in1k)')


@dataclass(frozen=True)
class Published:
    """A model's published top-1, the weights and test size it belongs to, and where it comes from."""
    model: str  # timm architecture name: what gets built and measured
    tag: str  # timm pretrained tag of the checkpoint whose accuracy is quoted ('' when given by the user)
    top1: float
    source: str
    img_size: int = PUBLISHED_SIZE  # the test image size of the quoted top-1
    distilled: bool = False  # trained with a teacher model (knowledge distillation)

    @property
    def short_name(self) -> str:
        """``A``, ``N0``, ... for UniConvNet variants; the timm name for everything else."""
        prefix = 'uniconvnet_'
        return self.model[len(prefix):].upper() if self.model.startswith(prefix) else self.model

    @property
    def weights(self) -> str:
        """The timm name of the weights the top-1 belongs to, ``model.tag``."""
        return f'{self.model}.{self.tag}' if self.tag else self.model

    @property
    def excluded(self) -> Optional[str]:
        """Why this model is never picked as a variant's equally accurate peer (shown all the same), or None."""
        if self.distilled:
            return 'distilled'
        if self.img_size != PUBLISHED_SIZE:
            return f'top-1 at {self.img_size}'
        return None


def _uniconvnet(letter: str, top1: float) -> Published:
    return Published(f'uniconvnet_{letter}', 'in1k', top1, _UNICONVNET_README)


def _timm_news(model: str, tag: str, top1: float, date: str) -> Published:
    return Published(model, tag, top1, _TIMM_NEWS.format(date=date, model=model, top1=top1))


def _timm_csv(model: str, tag: str, top1: float, img_size: int = PUBLISHED_SIZE) -> Published:
    return Published(model, tag, top1, _TIMM_CSV.format(model=model, tag=tag, img_size=img_size, top1=top1),
                     img_size)


def _timm_readme(model: str, tag: str, top1: float, date: str, img_size: int = PUBLISHED_SIZE) -> Published:
    source = _TIMM_README.format(date=date, model=model, tag=tag, img_size=img_size, top1=top1)
    return Published(model, tag, top1, source, img_size)


UNICONVNET: Dict[str, Published] = {p.model: p for p in (
    _uniconvnet('a', 77.0), _uniconvnet('p0', 79.1), _uniconvnet('p1', 79.6), _uniconvnet('p2', 80.5),
    _uniconvnet('n0', 81.6), _uniconvnet('n1', 82.2), _uniconvnet('n2', 82.7), _uniconvnet('n3', 83.2),
    _uniconvnet('t', 84.2), _uniconvnet('s', 84.5), _uniconvnet('b', 85.0),
)}

PEERS: Dict[str, Published] = {p.model: p for p in sorted((
    # ResNet, RegNetY, MobileNetV3: timm's table
    _timm_csv('resnet18', 'tv_in1k', 69.76),
    _timm_csv('resnet34', 'a3_in1k', 72.97),
    _timm_csv('mobilenetv3_large_100', 'ra_in1k', 75.766),
    _timm_csv('regnety_016', 'tv2_in1k', 80.668),
    _timm_csv('resnet50', 'tv2_in1k', 80.85),
    _timm_csv('regnety_032', 'tv2_in1k', 81.756),
    # ConvNeXt
    _timm_news('convnext_atto', 'd2_in1k', 75.7, 'Aug 15, 2022'),
    _timm_news('convnext_femto', 'd1_in1k', 77.5, 'Aug 5, 2022'),
    _timm_news('convnext_pico', 'd1_in1k', 79.5, 'Aug 5, 2022'),
    _timm_news('convnext_nano', 'd1h_in1k', 80.8, 'July 27, 2022'),
    Published('convnext_tiny', 'fb_in1k', 82.1, _CONVNEXT_README),
    Published('convnext_small', 'fb_in1k', 83.1, _CONVNEXT_README),
    Published('convnext_base', 'fb_in1k', 83.8, _CONVNEXT_README),
    # ConvNeXt-V2 (FCMAE pre-training and fine-tuning, both on ImageNet-1k)
    Published('convnextv2_atto', 'fcmae_ft_in1k', 76.7, _CONVNEXTV2_README),
    Published('convnextv2_femto', 'fcmae_ft_in1k', 78.5, _CONVNEXTV2_README),
    Published('convnextv2_pico', 'fcmae_ft_in1k', 80.3, _CONVNEXTV2_README),
    Published('convnextv2_nano', 'fcmae_ft_in1k', 81.9, _CONVNEXTV2_README),
    Published('convnextv2_tiny', 'fcmae_ft_in1k', 83.0, _CONVNEXTV2_README),
    # EfficientNet: the ra4 recipe where it exists (B0, B1); B1-B3 are published at larger test sizes only
    _timm_readme('efficientnet_b0', 'ra4_e3600_r224_in1k', 78.584, 'July 26, 2024'),
    _timm_readme('efficientnet_b1', 'ra4_e3600_r240_in1k', 80.406, 'Aug 21, 2024', img_size=240),
    _timm_csv('efficientnet_b2', 'ra_in1k', 80.61, img_size=288),
    _timm_csv('efficientnet_b3', 'ra2_in1k', 82.242, img_size=320),
    # MobileNetV4
    _timm_readme('mobilenetv4_conv_small', 'e2400_r224_in1k', 73.756, 'June 12, 2024'),
    _timm_readme('mobilenetv4_conv_medium', 'e500_r224_in1k', 79.094, 'June 12, 2024'),
    _timm_readme('mobilenetv4_hybrid_medium', 'e500_r224_in1k', 80.442, 'June 12, 2024'),
    # EfficientViT (MIT)
    Published('efficientvit_b1', 'r224_in1k', 79.39, _EFFICIENTVIT_README),
    Published('efficientvit_b2', 'r224_in1k', 82.1, _EFFICIENTVIT_README),
    Published('efficientvit_l1', 'r224_in1k', 84.484, _EFFICIENTVIT_README),
    Published('efficientvit_l2', 'r224_in1k', 85.05, _EFFICIENTVIT_README),
    # MobileOne (reparameterized for inference)
    Published('mobileone_s0', 'apple_in1k', 71.4, _MOBILEONE_README),
    Published('mobileone_s1', 'apple_in1k', 75.9, _MOBILEONE_README),
    Published('mobileone_s2', 'apple_in1k', 77.4, _MOBILEONE_README),
    Published('mobileone_s3', 'apple_in1k', 78.1, _MOBILEONE_README),
    Published('mobileone_s4', 'apple_in1k', 79.4, _MOBILEONE_README),
    # FastViT (reparameterized; top-1 at 256), RepViT (reparameterized; distilled)
    Published('fastvit_t12', 'apple_in1k', 79.3, _FASTVIT_README, img_size=256),
    Published('fastvit_sa12', 'apple_in1k', 80.9, _FASTVIT_README, img_size=256),
    Published('fastvit_sa24', 'apple_in1k', 82.7, _FASTVIT_README, img_size=256),
    Published('repvit_m0_9', 'dist_450e_in1k', 79.1, _REPVIT_README, distilled=True),
    Published('repvit_m1_1', 'dist_450e_in1k', 81.2, _REPVIT_README, distilled=True),
    Published('repvit_m1_5', 'dist_450e_in1k', 82.5, _REPVIT_README, distilled=True),
    # MetaFormer: ConvFormer (separable convolutions) and CAFormer (attention in the last two stages). With
    # EfficientViT-L they are the ImageNet-1k-only checkpoints at 224 above ConvNeXt-B's 83.8, so that T, S and B
    # have peers at all.
    _timm_csv('convformer_s18', 'sail_in1k', 82.986),
    _timm_csv('caformer_s18', 'sail_in1k', 83.656),
    _timm_csv('convformer_s36', 'sail_in1k', 84.06),
    _timm_csv('caformer_s36', 'sail_in1k', 84.508),
    _timm_csv('convformer_b36', 'sail_in1k', 84.818),
    _timm_csv('caformer_m36', 'sail_in1k', 85.232),
), key=lambda p: (p.top1, p.model))}

# The variants with ImageNet-1k weights at 224 (L and XL have only ImageNet-22k ones).
DEFAULT_VARIANTS: Tuple[str, ...] = tuple(UNICONVNET)
DEFAULT_PEERS: Tuple[str, ...] = tuple(PEERS)


def _variant_name(name: str) -> str:
    name = name.strip().lower()
    return name if name.startswith('uniconvnet_') else f'uniconvnet_{name}'


def matchable_top1(model: str) -> Optional[float]:
    """The published top-1 of the timm model ``model`` (a variant or a peer), None where the table lists none or only
    one that is never matched (distilled, or at another test size)."""
    entry = UNICONVNET.get(model) or PEERS.get(model)
    return entry.top1 if entry is not None and not entry.excluded else None


def resolve_variants(names: Iterable[str]) -> List[Published]:
    """UniConvNet variants by name (``A``, ``n0`` or ``uniconvnet_t``), with their published top-1."""
    found = []
    for name in names:
        key = _variant_name(name)
        if key not in UNICONVNET:
            raise ValueError(f'no published ImageNet-1k top-1 at 224 for variant {name!r}; choose from: '
                             f'{", ".join(p.short_name for p in UNICONVNET.values())}')
        found.append(UNICONVNET[key])
    return found


def resolve_peers(names: Iterable[str]) -> List[Published]:
    """Peers by timm name from :data:`PEERS`, or ``NAME=TOP1`` for any timm model with a top-1 you supply."""
    found = []
    for name in names:
        model, sep, value = name.partition('=')
        model = model.strip()
        if sep:
            try:
                top1 = float(value)
            except ValueError:
                raise ValueError(f'bad peer {name!r}: use NAME=TOP1 with TOP1 a number, e.g. resnet50=80.4') from None
            if not 0 < top1 <= 100:
                raise ValueError(f'bad peer {name!r}: top-1 must be a percentage in (0, 100]')
            found.append(Published(check_model_name(model), '', top1, 'given on the command line'))
        elif model in PEERS:
            found.append(PEERS[model])
        else:
            raise ValueError(f'no published top-1 for peer {model!r}: give it as {model}=TOP1, or choose from: '
                             f'{", ".join(PEERS)}')
    return found

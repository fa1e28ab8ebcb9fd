"""Published ImageNet-1k top-1 at 224x224 of the UniConvNet variants and of timm peers, each with its source.

The frontier tool (:mod:`uniconvnet.speed.frontier`) places measured speed and memory against these numbers.
Only checkpoints trained on ImageNet-1k alone and evaluated at 224x224 are listed: timm's tables quote many
models at a larger test size (288 for ConvNeXt), which would flatter the peers, so every value below is the
224 one, and ``tag`` names the exact timm weights it belongs to (``timm.create_model(f'{model}.{tag}')``). Speed
does not depend on the weights: the frontier tool builds the architecture ``model`` with random weights.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Tuple

__all__ = ['DEFAULT_PEERS', 'DEFAULT_VARIANTS', 'PEERS', 'UNICONVNET', 'Published', 'resolve_peers',
           'resolve_variants']

_UNICONVNET_README = 'official UniConvNet README, "ImageNet-1K trained models" table (acc@1, 224x224)'
_CONVNEXT_README = 'official ConvNeXt README, "ImageNet-1K trained models" table (acc@1, 224x224); ' \
                   'timm\'s fb_in1k weights are these checkpoints'
_TIMM_NEWS = 'timm README release notes ({date}): "{model} - {top1} @ 224"'
_TIMM_RESULTS = 'timm results/results-imagenet.csv (img_size 224)'


@dataclass(frozen=True)
class Published:
    """A model's published top-1 and where it comes from."""
    model: str  # timm architecture name: what gets built and measured
    tag: str  # timm pretrained tag of the checkpoint whose accuracy is quoted
    top1: float
    source: str

    @property
    def short_name(self) -> str:
        """``A``, ``N0``, ... for UniConvNet variants; the timm name for everything else."""
        prefix = 'uniconvnet_'
        return self.model[len(prefix):].upper() if self.model.startswith(prefix) else self.model


def _uniconvnet(letter: str, top1: float) -> Published:
    return Published(f'uniconvnet_{letter}', 'in1k', top1, _UNICONVNET_README)


def _timm_news(model: str, tag: str, top1: float, date: str) -> Published:
    return Published(model, tag, top1, _TIMM_NEWS.format(date=date, model=model, top1=top1))


UNICONVNET: Dict[str, Published] = {p.model: p for p in (
    _uniconvnet('a', 77.0), _uniconvnet('p0', 79.1), _uniconvnet('p1', 79.6), _uniconvnet('p2', 80.5),
    _uniconvnet('n0', 81.6), _uniconvnet('n1', 82.2), _uniconvnet('n2', 82.7), _uniconvnet('n3', 83.2),
    _uniconvnet('t', 84.2), _uniconvnet('s', 84.5), _uniconvnet('b', 85.0),
)}

PEERS: Dict[str, Published] = {p.model: p for p in (
    Published('resnet18', 'tv_in1k', 69.76, _TIMM_RESULTS),
    Published('resnet34', 'a3_in1k', 72.97, _TIMM_RESULTS),
    _timm_news('convnext_atto', 'd2_in1k', 75.7, 'Aug 15, 2022'),
    Published('mobilenetv3_large_100', 'ra_in1k', 75.766, _TIMM_RESULTS),
    _timm_news('convnext_femto', 'd1_in1k', 77.5, 'Aug 5, 2022'),
    Published('efficientnet_b0', 'ra_in1k', 77.694, _TIMM_RESULTS),
    _timm_news('convnext_pico', 'd1_in1k', 79.5, 'Aug 5, 2022'),
    Published('regnety_016', 'tv2_in1k', 80.668, _TIMM_RESULTS),
    _timm_news('convnext_nano', 'd1h_in1k', 80.8, 'July 27, 2022'),
    Published('resnet50', 'tv2_in1k', 80.85, _TIMM_RESULTS),
    Published('regnety_032', 'tv2_in1k', 81.756, _TIMM_RESULTS),
    Published('convnext_tiny', 'fb_in1k', 82.1, _CONVNEXT_README),
    Published('convnext_small', 'fb_in1k', 83.1, _CONVNEXT_README),
    Published('convnext_base', 'fb_in1k', 83.8, _CONVNEXT_README),
    Published('convformer_b36', 'sail_in1k', 84.818, _TIMM_RESULTS),
    Published('caformer_m36', 'sail_in1k', 85.232, _TIMM_RESULTS),
)}

# The variants with ImageNet-1k weights at 224 (L and XL have only ImageNet-22k ones).
DEFAULT_VARIANTS: Tuple[str, ...] = tuple(UNICONVNET)
# ConvNets spanning A's 77.0 to B's 85.0, plus two below A for scale. ConvFormer (separable-conv MetaFormer)
# and CAFormer (attention in its last two stages) are the only ImageNet-1k-only checkpoints at 224 above
# ConvNeXt-B's 83.8 in timm's tables, so S and B have a peer at all.
DEFAULT_PEERS: Tuple[str, ...] = tuple(PEERS)


def _variant_name(name: str) -> str:
    name = name.strip().lower()
    return name if name.startswith('uniconvnet_') else f'uniconvnet_{name}'


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
            found.append(Published(model, '', top1, 'given on the command line'))
        elif model in PEERS:
            found.append(PEERS[model])
        else:
            raise ValueError(f'no published top-1 for peer {model!r}: give it as {model}=TOP1, or choose from: '
                             f'{", ".join(PEERS)}')
    return found

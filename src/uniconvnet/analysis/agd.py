"""Is an effective receptive field asymptotically Gaussian, and how wide is it? Numbers instead of a look.

The paper's claim is qualitative: UniConvNet's ERF is large *and* keeps an asymptotically Gaussian distribution
(AGD), while large kernels give a box-like plateau. These metrics make that measurable on any 2-D map ``m``
(an ERF from :mod:`uniconvnet.analysis.erf`, usually on RepLKNet's log scale ``log10(x + 1) / max``):

* **Centre** ``(y_c, x_c)``: the intensity-weighted centroid, ``y_c = sum(m * y) / sum(m)`` (likewise ``x_c``).
* **Radial profile** ``P(k)``: the mean of ``m`` over the ring of pixels whose distance to the centre rounds to
  ``k`` (``k - 0.5 <= d < k + 0.5``), for ``k = 0 .. R``, ``R`` the distance to the nearest border (complete
  rings only).
* **Monotonic decrease** ``M = sum_k max(P(k) - P(k+1), 0) / sum_k |P(k) - P(k+1)|``: the share of the
  profile's total variation that goes down. 1 when the profile never rises, 0.5 when it rises as much as it
  falls (a ring), NaN for a flat profile.
* **2-D Gaussian fit** ``g(x, y) = A exp(-(x - x0)^2 / (2 sx^2) - (y - y0)^2 / (2 sy^2))``, least squares over
  all pixels (``scipy.optimize.curve_fit``, started from the map's moments); ``sigma = sqrt(sx * sy)`` in
  pixels; goodness of fit ``R^2 = 1 - sum((m - g)^2) / sum((m - mean(m))^2)``.
* **Verdict**: asymptotically Gaussian when ``R^2 >= 0.9`` and ``M >= 0.9``. A Gaussian blob scores
  ``R^2 = 1, M = 1``; a flat box ``R^2 ~ 0.8`` (monotone, but not Gaussian); a ring ``R^2 < 0.7, M ~ 0.5``.
"""
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ['AGD_MIN_MONOTONICITY', 'AGD_MIN_R2', 'AGDMetrics', 'GaussianFit', 'agd_metrics', 'centroid',
           'fit_gaussian_2d', 'monotonic_decrease', 'radial_profile']

AGD_MIN_R2 = 0.9
AGD_MIN_MONOTONICITY = 0.9


def _as_map(m: Any) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f'expected a 2-D map, got an array of shape {m.shape}')
    if not np.isfinite(m).all():
        raise ValueError('the map holds NaN or inf values; drop the images whose gradients were not finite')
    return m


def centroid(m: np.ndarray) -> Tuple[float, float]:
    """Intensity-weighted centre ``(y, x)`` of a non-negative map; the geometric centre if the map sums to 0."""
    m = _as_map(m)
    total = m.sum()
    if total <= 0:
        return (m.shape[0] - 1) / 2, (m.shape[1] - 1) / 2
    ys, xs = np.arange(m.shape[0]), np.arange(m.shape[1])
    return float(m.sum(1) @ ys / total), float(m.sum(0) @ xs / total)


def radial_profile(m: np.ndarray, center: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Mean of ``m`` over rings of integer radius ``0 .. R`` around ``center`` (default: the centroid).

    ``R`` is the distance from the centre to the nearest border, so every ring is complete.
    """
    m = _as_map(m)
    cy, cx = centroid(m) if center is None else center
    h, w = m.shape
    radius = int(math.floor(min(cy, cx, h - 1 - cy, w - 1 - cx) + 0.5))
    ys, xs = np.ogrid[:h, :w]
    ring = np.floor(np.hypot(ys - cy, xs - cx) + 0.5).astype(np.int64)
    inside = ring <= radius
    sums = np.bincount(ring[inside], weights=m[inside], minlength=radius + 1)
    counts = np.bincount(ring[inside], minlength=radius + 1)
    return sums / np.maximum(counts, 1)


def monotonic_decrease(profile: np.ndarray) -> float:
    """``M = sum(max(-dP, 0)) / sum(|dP|)``: 1 for a profile that never rises, 0.5 for as much up as down."""
    steps = np.diff(np.asarray(profile, dtype=np.float64))
    variation = np.abs(steps).sum()
    if variation == 0:
        return float('nan')
    return float(np.clip(-steps, 0, None).sum() / variation)


@dataclass
class GaussianFit:
    """Least-squares axis-aligned 2-D Gaussian; positions and widths in pixels."""
    amplitude: float
    y0: float
    x0: float
    sigma_y: float
    sigma_x: float
    r2: float

    @property
    def sigma(self) -> float:
        """Geometric mean width ``sqrt(sigma_x * sigma_y)``."""
        return math.sqrt(self.sigma_x * self.sigma_y)


def _gaussian(coords: Tuple[np.ndarray, np.ndarray], amplitude, y0, x0, sigma_y, sigma_x) -> np.ndarray:
    y, x = coords
    return amplitude * np.exp(-0.5 * (((y - y0) / sigma_y) ** 2 + ((x - x0) / sigma_x) ** 2))


def _gaussian_jacobian(coords, amplitude, y0, x0, sigma_y, sigma_x) -> np.ndarray:
    # the analytic Jacobian makes a fit over a 1024x1024 map take a second instead of many
    y, x = coords
    dy, dx = (y - y0) / sigma_y, (x - x0) / sigma_x
    e = np.exp(-0.5 * (dy ** 2 + dx ** 2))
    g = amplitude * e
    return np.stack([e, g * dy / sigma_y, g * dx / sigma_x, g * dy ** 2 / sigma_y, g * dx ** 2 / sigma_x], axis=1)


def fit_gaussian_2d(m: np.ndarray) -> GaussianFit:
    """Fit ``A exp(-(x - x0)^2 / (2 sx^2) - (y - y0)^2 / (2 sy^2))`` to the map; NaNs if the fit fails."""
    from scipy.optimize import curve_fit
    m = _as_map(m)
    h, w = m.shape
    nan = GaussianFit(*(float('nan'),) * 6)
    total = m.sum()
    ss_tot = float(((m - m.mean()) ** 2).sum())
    if total <= 0 or ss_tot == 0:
        return nan
    cy, cx = centroid(m)
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    start_y = math.sqrt(max(float((m * (ys - cy) ** 2).sum() / total), 0.25))
    start_x = math.sqrt(max(float((m * (xs - cx) ** 2).sum() / total), 0.25))
    coords = (ys.ravel(), xs.ravel())
    try:
        params, _ = curve_fit(_gaussian, coords, m.ravel(), p0=(float(m.max()), cy, cx, start_y, start_x),
                              jac=_gaussian_jacobian, maxfev=2000)
    except (RuntimeError, ValueError):  # no convergence
        return nan
    amplitude, y0, x0, sigma_y, sigma_x = (float(p) for p in params)
    residual = m.ravel() - _gaussian(coords, *params)
    return GaussianFit(amplitude, y0, x0, abs(sigma_y), abs(sigma_x), 1.0 - float(residual @ residual) / ss_tot)


@dataclass
class AGDMetrics:
    """The AGD metrics of one map (see the module docstring for the formulas)."""
    radial_profile: np.ndarray
    monotonicity: float
    fit: GaussianFit
    map_size: Tuple[int, int]

    @property
    def sigma(self) -> float:
        """Width of the fitted Gaussian in pixels."""
        return self.fit.sigma

    @property
    def sigma_fraction(self) -> float:
        """``sigma`` as a fraction of the map's side (geometric mean of height and width)."""
        return self.fit.sigma / math.sqrt(self.map_size[0] * self.map_size[1])

    @property
    def is_gaussian(self) -> bool:
        """``R^2 >= 0.9`` and monotonic decrease ``M >= 0.9`` (False when either is NaN)."""
        return bool(self.fit.r2 >= AGD_MIN_R2 and self.monotonicity >= AGD_MIN_MONOTONICITY)

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (the radial profile as a list)."""
        return dict(is_gaussian=self.is_gaussian, sigma=self.sigma, sigma_fraction=self.sigma_fraction,
                    r2=self.fit.r2, monotonicity=self.monotonicity, fit=asdict(self.fit),
                    radial_profile=[float(v) for v in self.radial_profile])


def agd_metrics(m: np.ndarray) -> AGDMetrics:
    """Radial profile, monotonic decrease and 2-D Gaussian fit of a non-negative map."""
    m = _as_map(m)
    if (m < 0).any():
        raise ValueError('the map has negative values; the AGD metrics expect an ERF (non-negative contributions)')
    profile = radial_profile(m)
    return AGDMetrics(profile, monotonic_decrease(profile), fit_gaussian_2d(m), (m.shape[0], m.shape[1]))

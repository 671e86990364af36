"""The `sketch` condition: a line drawing, one channel, lines +1 on background -1.

Training sketches are synthesised from the image itself: an outline along every boundary between two
differently coloured regions, then per-sample augmentations (interior lines left out, thicker strokes,
gaps, a small offset) so that the model learns to follow a person's imperfect, simpler drawing rather
than a pixel-exact edge map. People draw the figure's outline and leave out most of what is inside it;
a model trained only on complete outlines reads a sparse drawing as "no detail here" and ignores it.

A user's drawing is normalised into the same representation: either polarity (black on white or white
on black), any size and mode, strokes of any width reduced to thin lines at the target resolution.

With `fill`, a second channel holds the shapes the lines enclose, filled in: the figure's silhouette,
which a small UNet cannot work out from thin lines (inside or outside is a global question). Sampling
then keeps the output's figure there (`figure`, condiff.steering.silhouette).

Sizes are given in pixels at the Nouns' native 32 px and scale with the resolution.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from PIL import Image

from condiff.conditions.base import ConditionEncoder
from condiff.conditions.registry import register_condition
from condiff.images import has_transparency, luma, to_rgb
from condiff.steering.silhouette import FIGURE_CONTRAST, KeepSilhouette, figure_backgrounds, reads_as_background

REFERENCE_SIZE = 32  # the resolution at which the pixel settings below are given
DROPOUT_SEGMENT = 2  # pixels (at 32 px) per side of a square of stroke dropped at once
INTERIOR_SEGMENT = 8  # pixels (at 32 px) per side of a square of interior lines left out at once
MIN_CONTRAST = 16  # grey levels; a drawing flatter than this has no lines
FILL_GAP = 2  # pixels (at 32 px): gaps in an outline up to this wide still enclose a shape (the default)
FILL_BACKGROUNDS = ("sides", "corners")  # what `fill` counts as background (`fill_shapes`)
FILL_BACKGROUND = "sides"  # the default, as the first fill models were trained
MAX_FIGURE_CONSISTENCY = 100.0  # the figure term's weight beside the edge term (consistency)
MIN_OUTSIDE = 1 / 64  # the least share of an image outside its drawn shapes that tells its background colour
WHERE = ("drawn", "agreed")  # where the consistency terms ask for the drawing (`edge_where`, `figure_where`)


def scaled(pixels: float, size: int) -> int:
    """A length given at 32 px, in whole pixels at `size`."""
    return round(pixels * size / REFERENCE_SIZE)


# ---------------------------------------------------------------------------------------------------
# Lines shared by training and user input
# ---------------------------------------------------------------------------------------------------


def thicken(lines: torch.Tensor, extra: int) -> torch.Tensor:
    """(N, 1, H, W) bool lines made `extra` pixels wider (a max filter of width extra + 1, centred)."""
    if extra == 0:
        return lines
    before, after = extra // 2, extra - extra // 2
    padded = F.pad(lines.float(), (before, after, before, after))
    return F.max_pool2d(padded, kernel_size=extra + 1, stride=1) > 0


def to_channel(lines: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return lines.to(dtype) * 2.0 - 1.0


def fill_shapes(lines: np.ndarray, gap: int, background: str = FILL_BACKGROUND) -> np.ndarray:
    """(H, W) bool lines -> the shapes they draw, filled: every pixel that is not background.

    Background is what the frame's surroundings reach without crossing a line, gaps up to `gap` pixels
    closed. A region that touches only one side of the frame is a figure the frame cuts (a Noun's body
    stands on the bottom edge), not background: with `background` "sides" background reaches at least two
    sides, or a corner; with "corners" only a region that reaches a corner is background.
    """
    from scipy import ndimage

    four = ndimage.generate_binary_structure(2, 1)
    margin = gap - gap // 2  # lines grow this much on each side, closing gaps up to `gap` pixels
    wall = ndimage.binary_dilation(lines, structure=four, iterations=margin) if margin else lines
    regions, _ = ndimage.label(~wall, structure=four)
    if background == "corners":
        outer = list({regions[0, 0], regions[0, -1], regions[-1, 0], regions[-1, -1]} - {0})
    else:
        sides = [set(np.unique(side)) - {0} for side in (regions[0], regions[-1], regions[:, 0], regions[:, -1])]
        outer = [r for r in set().union(*sides) if sum(r in side for side in sides) >= 2]
    outside = np.isin(regions, outer)
    if margin:  # give back the margin that closing the gaps took, without crossing a drawn line
        outside = ndimage.binary_dilation(outside, structure=four, iterations=margin, mask=~lines)
    return ~outside


# ---------------------------------------------------------------------------------------------------
# Training: outlines of colour regions, then augmentations
# ---------------------------------------------------------------------------------------------------


def region_outlines(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) bool, 1 px lines between neighbours whose colours differ
    by more than `threshold` (a fraction of the full range) in some channel.

    Each line goes on the darker side of its boundary: marking one side keeps lines one pixel wide, and
    the darker side is the figure's on the Nouns' light backgrounds and traces dark details (glasses,
    mouths) as shapes rather than as double lines.
    """
    brightness = luma(images)
    lines = torch.zeros_like(brightness, dtype=torch.bool)
    for dim in (-1, -2):  # horizontal neighbours, then vertical ones
        size = images.shape[dim]
        first, second = images.narrow(dim, 0, size - 1), images.narrow(dim, 1, size - 1)
        differs = (first - second).abs().amax(dim=1, keepdim=True) > 2.0 * threshold
        first_darker = brightness.narrow(dim, 0, size - 1) <= brightness.narrow(dim, 1, size - 1)
        lines.narrow(dim, 0, size - 1).logical_or_(differs & first_darker)
        lines.narrow(dim, 1, size - 1).logical_or_(differs & ~first_darker)
    return lines


def foreground(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W) bool: pixels unlike the image's background, taken as the
    median colour of its border (Nouns, icons and sprites stand on a flat background), by more than
    `threshold` (a fraction of the full range) in some channel."""
    return ~reads_as_background(images - border_background(images), threshold, dim=1)


def border_background(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, 1, 1): each image's background colour, the median colour of its border."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    return border.median(dim=-1).values[..., None, None]


def interior(lines: torch.Tensor, images: torch.Tensor, threshold: float) -> torch.Tensor:
    """The lines that are not on the figure's outline: farther than one pixel from the background."""
    near_background = thicken(~foreground(images, threshold)[:, None], 2)
    return lines & ~near_background


def leave_out_interior(lines: torch.Tensor, images: torch.Tensor, threshold: float, most: float,
                       segment: int) -> torch.Tensor:
    """Each sample loses squares of `segment` pixels of its interior lines, with a probability drawn
    uniformly in [0, most] per sample; the figure's outline always stays."""
    inside = interior(lines, images, threshold)
    return (lines & ~inside) | drop_strokes(inside, torch.rand(lines.shape[0]) * most, segment)


def edge_strength(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) in [0, 1]: each pixel's largest colour difference to a 4-neighbour, in
    units of the difference that makes a line (region_outlines), capped at 1. Differentiable."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    differences = [
        (padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] - images).abs().amax(dim=1, keepdim=True)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))
    ]
    return (torch.stack(differences).amax(dim=0) / (2.0 * threshold)).clamp(max=1.0)


def figure_strength(images: torch.Tensor, background: torch.Tensor, contrast: float = FIGURE_CONTRAST) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) in [0, 1]: how unlike its image's `background` colour (N, 3, 1, 1) each
    pixel is, in units of the difference that makes it figure (`foreground`), capped at 1. Differentiable."""
    offset = images - background
    return (offset.abs().amax(dim=1, keepdim=True) / (2.0 * contrast)).clamp(max=1.0)


def background_outside(images: torch.Tensor, figure: torch.Tensor) -> torch.Tensor:
    """(N, 3, 1, 1): each image's median colour outside its figure (N, 1, H, W) bool, as `figure_strength`
    takes it; 0 for an image whose figure is everything (the figure term leaves those out)."""
    return figure_backgrounds(images, figure).nan_to_num()[..., None, None]


def jitter_thickness(lines: torch.Tensor, max_extra: int) -> torch.Tensor:
    """Each sample's strokes widened by a uniform 0..max_extra pixels."""
    extras = torch.randint(0, max_extra + 1, (lines.shape[0],)).tolist()
    return torch.cat([thicken(line[None], extra) for line, extra in zip(lines, extras, strict=True)])


def drop_strokes(lines: torch.Tensor, probability: float | torch.Tensor, segment: int) -> torch.Tensor:
    """Remove squares of `segment` pixels with `probability` (one for all, or (N,) per sample), leaving
    gaps as a hurried hand does."""
    count, _, height, width = lines.shape
    grid = (-(-height // segment), -(-width // segment))
    probability = torch.as_tensor(probability, dtype=torch.float32).reshape(-1, 1, 1, 1)
    keep = torch.rand(count, 1, *grid) >= probability
    keep = keep.repeat_interleave(segment, dim=2).repeat_interleave(segment, dim=3)[..., :height, :width]
    return lines & keep.to(lines.device)


def shift(lines: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each sample moved by up to `max_shift` pixels in x and y; pixels moved in are background."""
    offsets = torch.randint(-max_shift, max_shift + 1, (lines.shape[0], 2)).tolist()
    padded = F.pad(lines, (max_shift,) * 4)
    height, width = lines.shape[-2:]
    return torch.stack([
        line[:, max_shift - dy : max_shift - dy + height, max_shift - dx : max_shift - dx + width]
        for line, (dy, dx) in zip(padded, offsets, strict=True)
    ])


# ---------------------------------------------------------------------------------------------------
# User input: any drawing -> thin lines at the target resolution
# ---------------------------------------------------------------------------------------------------


def drawing_to_gray(image: Image.Image) -> np.ndarray:
    """(H, W) uint8. Transparency is flattened onto whichever of white or black the strokes stand out
    from, so both dark and light strokes on a transparent background survive."""
    background = (255, 255, 255)
    if has_transparency(image):
        rgba = image.convert("RGBA")
        opaque = np.asarray(rgba.getchannel("A")) >= 128
        strokes = np.asarray(rgba.convert("L"))[opaque]
        if strokes.size and np.median(strokes) > 127:
            background = (0, 0, 0)
    return np.asarray(to_rgb(image, background=background).convert("L"))


def stroke_mask(gray: np.ndarray) -> np.ndarray:
    """(H, W) bool strokes: Otsu's threshold splits ink from paper, and the paper is the class that
    covers most of the image's border (robust even when strokes cover much of the interior)."""
    import cv2

    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=bool)
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light = binary > 0
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    return ~light if border.mean() >= 0.5 else light


def center_square(mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return mask[top : top + side, left : left + side]


def downsample_strokes(mask: np.ndarray, resolution: int) -> np.ndarray:
    """(S, S) bool -> (res, res) bool. A target pixel is ink when ink covers at least half of what a 1 px
    source line crossing it would: thin lines of a large drawing survive, isolated specks do not."""
    import cv2

    scale = mask.shape[0] / resolution
    coverage = cv2.resize(mask.astype(np.float32), (resolution, resolution), interpolation=cv2.INTER_AREA)
    return coverage >= 0.5 / max(scale, 1.0)


def drawing_shapes(strokes: np.ndarray, resolution: int, gap: float = FILL_GAP,
                   background: str = FILL_BACKGROUND) -> np.ndarray:
    """(S, S) bool ink -> (res, res) bool filled shapes. Filled at the drawing's own resolution, with each
    stroke thinned to its centre line (the edge it marks, whatever the pen's width); then a target pixel
    is inside when most of it is, so a line that lands between two target pixels does not widen the shape.
    `gap` is in pixels at 32 px; `background` as in `fill_shapes`."""
    import cv2
    from skimage.morphology import skeletonize

    filled = fill_shapes(skeletonize(strokes), max(1, scaled(gap, strokes.shape[0])), background)
    return cv2.resize(filled.astype(np.float32), (resolution, resolution), interpolation=cv2.INTER_AREA) >= 0.5


# ---------------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------------


@register_condition("sketch")
class SketchCondition(ConditionEncoder):
    """Line drawings, +1 lines on -1 background.

    - `thickness_jitter`: strokes get 0..this many extra pixels of width (at 32 px). Off by default:
      a Noun's outlines are 1 px apart in places, so even 1 px more merges its details into blobs, and
      users' strokes are thinned to 1 px anyway, so the model never meets thick ones. For art with
      sparser lines, 1.0 teaches some tolerance of stroke width.
    - `stroke_dropout`: probability that each 2x2 (at 32 px) square of stroke is erased.
    - `max_shift`: the sketch moves by up to this many pixels (at 32 px) in x and y.
    - `threshold`: colours differing by at most this fraction of the range in every channel count as
      one region (no line between them).
    - `interior_dropout`: each sample loses 8x8 (at 32 px) squares of the lines inside its figure with a
      probability drawn in [0, this]; the outline against the background always stays. 0 (the default,
      as the first shipped model was trained) keeps every line; 1.0 (recipes/sketch2img-finetune.yaml)
      teaches the model to follow the sparse drawings people make (the outlines of the main shapes).
    - `fill`: a second channel gives the drawn shapes filled in (`fill_shapes`; a user's drawing is filled
      at its own resolution): the silhouette the outlines enclose, which sampling then keeps
      (`figure`). Off by default (one channel, as the first two shipped models were trained);
      recipes/sketch2img-fill.yaml turns it on.
    - `fill_gap`: gaps in the drawn outlines up to this many pixels (at 32 px) still enclose a shape.
    - `fill_background`: "sides" (as the first fill models were trained): background is what reaches two
      sides of the frame or a corner; "corners": only what reaches a corner, so a figure that the frame
      cuts on several sides (an emoji's face drawn edge to edge) is still filled.

    `consistency` (train.consistency_weight) asks the predicted image to have an edge under each drawn line;
    with `fill` and `figure_consistency` > 0, also (that many times as much) a figure that is the drawn
    shapes: unlike the background (the prediction's colour outside them) inside them, like it outside. It
    helps where the drawn shapes are close to the true figures (Nouns), not where they are not (Twemoji;
    docs/sketch2img.md).
    - `edge_where`: "drawn" (as the models before it were trained) asks for a full edge under every drawn
      line; "agreed" for as strong an edge as the training image itself has there, so that a line the
      augmentations widened or shifted off the true edge asks for nothing the truth does not have.
    - `figure_where`: "drawn" (as the first figure models were trained) asks for the drawn shapes at every
      pixel; "agreed" only at the pixels where the training image itself is figure inside them or
      background outside them, so the term never asks for other colours than the truth's (a Noun's
      background-coloured eyes or stripes lie inside its drawn shapes).
    """

    channels = 1
    drawn = True

    @register_to_config
    def __init__(
        self,
        thickness_jitter: float = 0.0,
        stroke_dropout: float = 0.1,
        max_shift: float = 1.0,
        threshold: float = 0.05,
        interior_dropout: float = 0.0,
        fill: bool = False,
        fill_gap: float = FILL_GAP,
        fill_background: str = FILL_BACKGROUND,
        figure_consistency: float = 0.0,
        figure_where: str = "drawn",
        edge_where: str = "drawn",
    ) -> None:
        for key, pixels in (("thickness_jitter", thickness_jitter), ("max_shift", max_shift), ("fill_gap", fill_gap)):
            if not 0 <= pixels <= REFERENCE_SIZE:
                raise ValueError(f"sketch {key} must be from 0 to {REFERENCE_SIZE} (pixels at {REFERENCE_SIZE} px, "
                                 f"the whole image), got {pixels}")
        for key, share in (("stroke_dropout", stroke_dropout), ("threshold", threshold)):
            if not 0.0 <= share < 1.0:
                raise ValueError(f"sketch {key} must be in [0, 1), got {share}")
        if not 0.0 <= interior_dropout <= 1.0:
            raise ValueError(f"sketch interior_dropout must be in [0, 1], got {interior_dropout}")
        if not 0.0 <= figure_consistency <= MAX_FIGURE_CONSISTENCY:
            raise ValueError(f"sketch figure_consistency must be from 0 to {MAX_FIGURE_CONSISTENCY} (its weight beside "
                             f"the edge term of the consistency loss), got {figure_consistency}")
        if not isinstance(fill, bool):
            raise ValueError(f"sketch fill must be true or false, got {fill!r}")
        if figure_consistency and not fill:
            raise ValueError("sketch figure_consistency needs fill: true (the drawn shapes it asks the figure to be)")
        for key, where in (("figure_where", figure_where), ("edge_where", edge_where)):
            if where not in WHERE:
                raise ValueError(f"sketch {key} must be one of {', '.join(WHERE)}, got {where!r}")
        if fill_background not in FILL_BACKGROUNDS:
            raise ValueError(f"sketch fill_background must be one of {', '.join(FILL_BACKGROUNDS)}, "
                             f"got {fill_background!r}")

    @property
    def num_channels(self) -> int:
        return 2 if self.config.fill else 1

    def to_channels(self, lines: torch.Tensor, dtype: torch.dtype = torch.float32,
                    shapes: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1, H, W) bool lines -> the encoder's channels: the lines, and with `fill` their filled shapes:
        `shapes` when given (a user's drawing is filled at its own resolution), else filled from the lines."""
        if not self.config.fill:
            return to_channel(lines, dtype)
        if shapes is None:
            gap = max(1, scaled(self.config.fill_gap, lines.shape[-1]))
            filled = [fill_shapes(line, gap, self.config.fill_background) for line in lines.cpu().numpy()[:, 0]]
            shapes = torch.from_numpy(np.stack(filled))[:, None].to(lines.device)
        return torch.cat([to_channel(lines, dtype), to_channel(shapes, dtype)], dim=1)

    def encode_training(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[-1]
        config = self.config
        lines = region_outlines(images, config.threshold)
        if config.interior_dropout > 0:
            lines = leave_out_interior(lines, images, config.threshold, config.interior_dropout,
                                       max(1, scaled(INTERIOR_SEGMENT, size)))
        lines = jitter_thickness(lines, scaled(config.thickness_jitter, size))
        lines = drop_strokes(lines, config.stroke_dropout, max(1, scaled(DROPOUT_SEGMENT, size)))
        lines = shift(lines, scaled(config.max_shift, size))
        return self.to_channels(lines, images.dtype)

    def consistency(self, predicted: torch.Tensor, channels: torch.Tensor,
                    truth: torch.Tensor | None = None) -> torch.Tensor:
        """The mean shortfall of edge strength under the drawn lines: 0 when the predicted image has a
        full-strength colour edge wherever a line is drawn (as the image the sketch was made from has).
        Lines drawn nowhere near an edge count; edges left undrawn do not (a drawing leaves details out).
        With `figure_consistency`, plus the figure term; `truth` (the training images) tells where the
        drawing and the truth agree, for `edge_where` and `figure_where: agreed` (without it, every pixel
        counts as drawn)."""
        drawn = (channels[:, :1] > 0).to(predicted)
        asked = 1.0
        if self.config.edge_where == "agreed" and truth is not None:
            asked = edge_strength(truth, self.config.threshold)
        shortfall = (asked - edge_strength(predicted, self.config.threshold)).clamp(min=0.0) * drawn
        loss = shortfall.sum(dim=(1, 2, 3)) / drawn.sum(dim=(1, 2, 3)).clamp(min=1.0)
        if not self.config.figure_consistency:  # off, or without fill (the settings refuse it there)
            return loss
        figure = self.figure(channels)
        # The mean mismatch of the predicted figure and the drawn shapes, against the colour the prediction
        # has outside them (held fixed; not the border's: a figure drawn edge to edge, as an emoji's face, owns
        # most of the border); none where the lines enclose nothing, or so much that too little is outside.
        strength = figure_strength(predicted, background_outside(predicted.detach(), figure))
        if self.config.figure_where == "agreed" and truth is not None:
            # Where the truth is figure inside the drawn shapes or background outside them, as strongly as
            # the truth is (a faint colour outside stays faint); elsewhere nothing is asked.
            true_strength = figure_strength(truth, background_outside(truth, figure))
            agrees = (true_strength >= 1.0) == figure
            mismatch = ((strength - true_strength).abs() * agrees.to(predicted)).mean(dim=(1, 2, 3))
        else:
            mismatch = (strength - figure.to(predicted)).abs().mean(dim=(1, 2, 3))
        outside = (~figure).flatten(1).float().mean(dim=1)
        applies = figure.flatten(1).any(dim=1) & (outside >= MIN_OUTSIDE)
        return loss + self.config.figure_consistency * mismatch * applies.to(predicted)

    def steering(self, channels: torch.Tensor, modes: Mapping[str, str]) -> list:
        """With `fill`, the output keeps the drawn silhouette (condiff.steering.silhouette), unless `silhouette`
        is off."""
        figure = self.figure(channels)
        return [KeepSilhouette(figure)] if figure is not None and modes["silhouette"] == "auto" else []

    def figure(self, channels: torch.Tensor) -> torch.Tensor | None:
        """With `fill`, the drawn shapes: the figure the output should have. A sample whose lines enclose
        nothing (or whose condition is dropped) has none: all False."""
        if not self.config.fill:
            return None
        lines, shapes = channels[:, :1] > 0, channels[:, 1:2] > 0
        encloses = (shapes & ~lines).flatten(1).any(dim=1)
        return shapes & encloses[:, None, None, None]

    def encode_input(self, image: Image.Image, resolution: int) -> torch.Tensor:
        """A person's drawing: black on white or white on black, any size and mode (transparent pixels
        are background). Lines are thinned to one pixel, then widened to the middle of the training widths."""
        from skimage.morphology import skeletonize

        strokes = center_square(stroke_mask(drawing_to_gray(image)))  # ink at the drawing's own resolution
        lines = torch.from_numpy(skeletonize(downsample_strokes(strokes, resolution)))[None, None]
        lines = thicken(lines, scaled(self.config.thickness_jitter, resolution) // 2)
        shapes = None
        if self.config.fill:
            filled = drawing_shapes(strokes, resolution, self.config.fill_gap, self.config.fill_background)
            shapes = torch.from_numpy(filled)[None, None]
        return self.to_channels(lines, shapes=shapes)

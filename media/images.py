"""Photos in any format Pillow reads -> upright RGB images, refusing bombs before decoding."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from core.errors import MediaError
from media.files import names_its_file, read_bytes
from media.limits import MediaLimits

FORMATS = "PNG, JPEG, WebP, GIF, BMP or TIFF"


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; transparency composited on white; 16-bit and float scaled."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        span = values.max() - values.min()
        values = (values - values.min()) / span * 255 if span else np.zeros_like(values)
        image = Image.fromarray(values.astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


@names_its_file
def load_image(source: Any, limits: MediaLimits = MediaLimits()) -> Image.Image:
    """A PIL image, a path or bytes -> an RGB image. Raises MediaError for anything unusable."""
    if isinstance(source, Image.Image):
        image = source
    else:
        data = read_bytes(source, limits, "image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))  # reads the header only
                width, height = image.size
                if width * height > limits.max_image_pixels:
                    raise MediaError(
                        f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} MP); "
                        f"the limit is {limits.max_image_pixels / 1e6:.0f} MP."
                    )
                image.seek(0)  # animated GIF/WebP: the first frame
                image.load()
        except MediaError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own guard, at open()
            raise MediaError(
                f"The image has too many pixels (over {limits.max_image_pixels / 1e6:.0f} MP); it may be a "
                "decompression bomb."
            ) from None
        except Exception:  # Pillow raises many types (OSError, SyntaxError, struct.error, …) on bad data
            raise MediaError(f"The image could not be decoded: use a {FORMATS} file.") from None
    if image.width < 1 or image.height < 1:
        raise MediaError("The image has no pixels.")
    try:
        return to_rgb(image)
    except Exception:  # e.g. a malformed EXIF block
        raise MediaError("The image could not be converted to RGB.") from None

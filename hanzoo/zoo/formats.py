"""The one table of export formats. Everything that names a format, its file or its runtime reads it here:
the exporter, the runtimes, the Hub pins, the site, the benchmark, the aarch64 check and the docs.

A format's fields:
- `file`: its file name in an export folder (export/<id>/model.onnx); the Hub repo keeps it in a folder
  named after the format (onnx/model.onnx); `companions`, the other files it is made of, beside it
  (the C export's model.h), so `files` is all of them;
- `runtime`: the name of the runtime that runs it (hanzoo.runtimes.sessions), and `extra`, the pip extra that
  installs that runtime; `more_runtimes`, the other runtimes that run the same fp32 file (TensorFlow Lite for
  Microcontrollers reads model.tflite), each with its extra and the models it covers;
- `app`: whether an app runs it (the benchmark's and the docs' runtimes; torch trains);
- `aarch64`: whether `hanzoo verify --arch aarch64` runs it on emulated arm64 (the C export: cross-compiled);
- `byte_identical`: whether its bytes are a function of the weights alone, so a re-export must give the
  shipped file byte for byte;
- `variants`: the reduced precisions it can carry (model.fp16.onnx, ...: hanzoo.graphs.precision);
- `images`: whether it covers the image models (the C export covers the MLPs alone);
- `wheel`: whether the wheel carries its files (the C sources are text, about 17 bytes a weight, and would
  take the wheel past its 40 MB; an installed hanzoo writes them from the bundled weights).
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class MoreRuntime:
    """A second runtime of a format's fp32 file: its name, the pip extra that installs it, and whether it runs
    the image models (`covers`, as a Format's)."""

    name: str
    extra: str
    images: bool = True

    def covers(self, takes_images: bool) -> bool:
        return self.images or not takes_images


@dataclass(frozen=True)
class Format:
    name: str
    file: str
    runtime: str
    extra: str
    app: bool = True
    aarch64: bool = True
    byte_identical: bool = True
    variants: tuple[str, ...] = ()
    companions: tuple[str, ...] = ()
    images: bool = True
    wheel: bool = True
    more_runtimes: tuple[MoreRuntime, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of it in an export folder, its main file first."""
        return (self.file, *self.companions)

    def covers(self, takes_images: bool) -> bool:
        """Whether a model of this kind (an image model or an MLP) can be written in this format."""
        return self.images or not takes_images

    def variant_file(self, precision: str) -> str:
        """This format's file at a precision: model.onnx, model.int8.onnx, ..."""
        if precision == "fp32":
            return self.file
        stem, ext = self.file.rsplit(".", 1)
        return f"{stem}.{precision}.{ext}"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("onnx", "model.onnx", "onnxruntime", "onnx", variants=PRECISIONS),
        # laid out in hash-map order by the converter: the same size and outputs, not the same bytes
        Format("ort", "model.ort", "ort-mobile", "onnx", byte_identical=False),
        # TensorFlow Lite for Microcontrollers runs the MLPs' files on its reference kernels, one row per
        # invoke; a CIFAR-10 test split through its reference convolutions would take hours
        Format(
            "tflite",
            "model.tflite",
            "litert",
            "litert",
            variants=PRECISIONS,
            more_runtimes=(MoreRuntime("tflite-micro", "tflm", images=False),),
        ),
        # the emulated arm64 environment (hanzoo.runtimes.arm) installs only ONNX Runtime's and LiteRT's
        # wheels
        Format("pte", "model.pte", "executorch", "executorch", aarch64=False),
        # plain C99 for any compiler, run here through the system cc; on aarch64 cross-compiled and run
        # emulated (hanzoo.runtimes.arm), and on a Cortex-M too (hanzoo.runtimes.mcu)
        Format("c", "model.c", "c", "", companions=("model.h",), images=False, wheel=False),
    ]
}

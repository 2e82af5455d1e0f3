"""The ``signcut`` command (also ``python -m signcut``).

    signcut demo [--out DIR] [-q]
    signcut image IN.png -o OUT.sct [--ratio 0.05] [--tile 12] [--color ycbcr] [--preview N]
    signcut image OUT.sct -o back.png [--preview N]
    signcut weights IN.safetensors|FOLDER -o OUT.sct [--bits-per-entry 8] [--ratio R]
                    [--rtol E] [--effort E] [--include RE] [--exclude RE] [--min-size N]
                    [--jobs N | --threads N] [--scheduler ADDR] [--seed S] [--dry-run] [-q]
                    [--scales none|rows|cols|both|auto] [--calibration STATS.safetensors]
    signcut expand OUT.sct -o restored.safetensors [--dtype orig|bf16|f16|f32]
    signcut info FILE

Bad input (a missing file, a file that is neither a picture nor a signcut file, an empty
picture, an output that cannot be written or that is the input) gives one line on stderr and
exit status 2. Outputs are written atomically (a temporary file, then ``os.replace``), and
every check happens before anything is written.
"""
import argparse
import os
import sys
import time
from importlib import resources

import numpy as np

import signcut
from signcut._atomic import atomic_write, check_output, open_regular
from signcut._budget import signs_nbytes

DEMO_RATIOS = (0.02, 0.05, 0.10, 0.25)
DEMO_SEED = 0


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit status 2."""


# ------------------------------------------------------------------ progress
class Progress:
    """A progress bar on stderr: tqdm when it is installed, else a plain line (redrawn in
    place on a terminal, printed once at the end otherwise). ``quiet`` shows nothing."""

    def __init__(self, total, desc, quiet=False, unit="cut"):
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, 0
        self.quiet = quiet
        self.bar = None
        self.t0 = time.perf_counter()
        self.last = 0.0
        if quiet:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            self.tty = sys.stderr.isatty()
        else:
            self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=sys.stderr,
                            dynamic_ncols=True)

    def update_to(self, n):
        n = min(int(n), self.total)
        if self.quiet or n == self.n:
            self.n = n
            return
        if self.bar is not None:
            self.bar.update(n - self.n)
        elif self.tty:
            now = time.perf_counter()
            if now - self.last >= 0.1 or n == self.total:
                self.last = now
                pct = 100 * n // max(self.total, 1)
                sys.stderr.write(f"\r{self.desc}: {pct:3d}% ({n}/{self.total} {self.unit}s)")
                sys.stderr.flush()
        self.n = n

    def write(self, line):
        """A line on stdout, above the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.close()
            return
        seconds = time.perf_counter() - self.t0
        line = f"{self.desc}: {self.n}/{self.total} {self.unit}s in {seconds:.1f} s"
        sys.stderr.write(("\r" + line + "\n") if self.tty else (line + "\n"))
        sys.stderr.flush()


def _compress(source, quiet, desc, **kw):
    """signcut.image.compress with a progress bar over the planned cuts."""
    from signcut import image
    bar = None

    def callback(done, total):
        nonlocal bar
        if bar is None:
            bar = Progress(total, desc, quiet)
        bar.update_to(done)

    try:
        result = image.compress(source, callback=callback, **kw)
    finally:
        if bar is not None:
            bar.close()
    return result


# ------------------------------------------------------------------ files
def _image_format(path):
    """The Pillow format that writes ``path`` (from its extension), or None."""
    from PIL import Image
    return Image.registered_extensions().get(os.path.splitext(path)[1].lower())


def _save_picture(pil_image, path):
    fmt = _image_format(path)
    if fmt is None:
        raise UsageError(f"cannot write {path!r}: unknown picture extension "
                         f"(use .png, .jpg, .webp, ...)")

    def write(tmp):
        with open(tmp, "wb") as f:
            pil_image.save(f, format=fmt)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def _preview_paths(output, total, every):
    stem = os.path.splitext(output)[0]
    steps = list(range(every, total, every)) + [total] if total else [0]
    return [(k, f"{stem}-preview-{i:04d}.png") for i, k in enumerate(steps, 1)]


def _write_previews(result, output, every, quiet, inputs):
    paths = _preview_paths(output, result.cuts, every)
    for _, p in paths:
        check_output(p, inputs)
    bar = Progress(len(paths), "previews", quiet, unit="picture")
    try:
        for i, (k, p) in enumerate(paths, 1):
            _save_picture(result.truncate(k).to_image(), p)
            bar.update_to(i)
    finally:
        bar.close()
    return [p for _, p in paths]


# ------------------------------------------------------------------ signcut image
def _parse_tile(text):
    t = text.strip().lower()
    if t in ("none", "0", "off"):
        return 0                              # no tiling (None means "not given")
    try:
        parts = [int(p) for p in t.split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"tile must be N, HxW or none, got {text!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value
    return parse


def _outliers(text):
    """--outliers: 'auto', 'off' (0) or a fraction in [0, 1)."""
    if text in ("auto", "off"):
        return 0.0 if text == "off" else text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, off or a fraction, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return value


def cmd_image(args):
    from PIL import UnidentifiedImageError

    from signcut import image
    source, output = args.input, args.output
    try:
        with open_regular(source) as f:
            empty = os.fstat(f.fileno()).st_size == 0
    except FileNotFoundError:
        raise UsageError(f"cannot read {source!r}: no such file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {source!r}: {exc.strerror}") from None
    if empty:
        raise UsageError(f"cannot read {source!r}: the file is empty")
    check_output(output, [source])

    if image.is_signcut_file(source):                      # decode
        if _image_format(output) is None:
            raise UsageError(f"cannot write {output!r}: decoding writes a picture; use an "
                             f"extension such as .png")
        try:
            result = image.decode(source)
        except signcut.FormatError as exc:
            raise UsageError(f"{source!r} is not a signcut picture: {exc}") from None
        if args.preview:
            _write_previews(result, output, args.preview, args.quiet, [source])
        _save_picture(result.to_image(), output)
        psnr = "" if result.psnr is None else f", PSNR {result.psnr:.2f} dB when encoded"
        print(f"{output}: {result.mode} {result.size[0]} x {result.size[1]} from {result.cuts} "
              f"cuts ({result.nbytes} bytes stored{psnr})")
        return 0

    try:                                                   # encode
        picture = image.open_picture(source)
    except UnidentifiedImageError:
        raise UsageError(f"cannot read {source!r}: neither a picture Pillow can open nor a "
                         f"signcut file") from None
    if _image_format(output) is not None:  # after reading: a broken .sct gets the right message
        raise UsageError(f"cannot write {output!r}: encoding writes a signcut file, not a "
                         f"picture; use an extension such as .sct")
    if picture.width == 0 or picture.height == 0:
        raise UsageError(f"{source!r} is an empty picture ({picture.width} x {picture.height})")
    budget = {"ratio": args.ratio, "bits_per_pixel": args.bits_per_pixel, "width": args.width}
    if all(v is None for v in budget.values()):
        budget["ratio"] = 0.05
    result = _compress(picture, args.quiet, "compressing", tile=args.tile, color=args.color,
                       seed=args.seed, n_threads=args.threads, **budget)
    if args.preview:
        for _, p in _preview_paths(output, result.cuts, args.preview):
            check_output(p, [source, output])
    result.save(output)
    if args.preview:
        _write_previews(result, output, args.preview, args.quiet, [source, output])
    size = os.path.getsize(output)
    print(f"{output}: {result.nbytes} bytes stored ({100 * result.ratio:.2f}% of the "
          f"{result.raw_nbytes} raw bytes, {result.bits_per_pixel:.3f} bits per pixel), "
          f"{result.cuts} cuts, PSNR {result.psnr:.2f} dB, file {size} bytes")
    return 0


# ------------------------------------------------------------------ signcut demo
def _label_font(size):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                         # Pillow < 10.1: the small bitmap font only
        return ImageFont.load_default()


def contact_sheet(tiles):
    """One picture: ``tiles`` (PIL image, [label lines]) side by side, labels below."""
    from PIL import Image, ImageDraw
    font = _label_font(14)
    gap, line = 8, 18
    lines = max(len(t[1]) for t in tiles)
    w = sum(im.width for im, _ in tiles) + gap * (len(tiles) + 1)
    h = max(im.height for im, _ in tiles) + 2 * gap + lines * line + gap
    sheet = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(sheet)
    x = gap
    for im, labels in tiles:
        sheet.paste(im.convert("RGB"), (x, gap))
        y = gap + im.height + gap // 2
        for text in labels:
            draw.text((x, y), text, fill="black", font=font)
            y += line
        x += im.width + gap
    return sheet


def cmd_demo(args):
    from PIL import Image

    from signcut import image
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"cannot write into {out!r}: it is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create folder {out!r}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write into {out!r}: permission denied")
    with resources.as_file(resources.files("signcut") / "data" / "chelsea.png") as path:
        with Image.open(path) as im:
            cat = np.asarray(im.convert("RGB"))
    h, w, c = cat.shape
    ratios = sorted(set(args.ratios))
    print(f"chelsea.png: {w} x {h} RGB, {cat.nbytes} bytes of raw 8-bit pixels; "
          f"tile {image.DEFAULT_TILE}, colour {image.DEFAULT_COLOR}, seed {args.seed}\n")
    rows, tiles = [], [(Image.fromarray(cat), ["original", f"{cat.nbytes} bytes raw"])]
    for ratio in ratios:
        t0 = time.perf_counter()
        result = _compress(cat, args.quiet, f"{100 * ratio:g}%", ratio=ratio, seed=args.seed,
                           n_threads=args.threads)
        seconds = time.perf_counter() - t0
        stem = os.path.join(out, f"chelsea-{100 * ratio:g}pct")
        result.save(stem + ".sct")
        picture = result.to_image()
        _save_picture(picture, stem + ".png")
        rows.append((f"{100 * ratio:g}%", result.nbytes, os.path.getsize(stem + ".sct"),
                     f"{result.bits_per_pixel:.3f}", result.cuts, f"{result.psnr:.2f}",
                     f"{seconds:.2f}", os.path.basename(stem) + ".png"))
        tiles.append((picture, [f"{100 * ratio:g}% of raw, {result.nbytes} bytes",
                                f"PSNR {result.psnr:.2f} dB"]))
    sheet_path = os.path.join(out, "contact-sheet.png")
    _save_picture(contact_sheet(tiles), sheet_path)
    print("| budget | bytes stored | file bytes | bits/pixel | cuts | PSNR (dB) | seconds "
          "| picture |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print(f"\nWrote {len(rows)} reconstructions (.png), their signcut files (.sct) and "
          f"{os.path.basename(sheet_path)} to {out}")
    return 0


# ------------------------------------------------------------------ signcut weights / expand / info
def cmd_weights(args):
    from signcut import weights
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    kw = dict(bits_per_entry=args.bits_per_entry, ratio=args.ratio, rtol=args.rtol,
              include=args.include, exclude=args.exclude, min_size=args.min_size,
              jobs=args.jobs, scheduler=args.scheduler, seed=args.seed, effort=args.effort,
              outliers=args.outliers, n_threads=args.threads,
              scales=None if args.scales == "none" else args.scales,
              calibration=args.calibration)
    if args.dry_run:
        plan = weights.compress(args.input, args.output, dry_run=True, **kw)
        print("| name | dtype | shape | kind | cuts (at most) | bytes (at most) | note |")
        print("|---|---|---|---|---:|---:|---|")
        for t in plan["tensors"]:
            shape = "x".join(map(str, t["shape"]))
            if t["kind"] == "signcut":
                print(f"| {weights.printable(t['name'])} | {t['dtype']} | {shape} | signcut | "
                      f"{t['max_width']} | {signs_nbytes(t['max_width'], t['shape'])} | |")
            else:
                print(f"| {weights.printable(t['name'])} | {t['dtype']} | {shape} | copied | | | "
                      f"{t['reason']} |")
        print(plan["summary"]["line"] + "; nothing written (--dry-run)")
        return 0
    bar = None

    def progress(record, done, total):
        nonlocal bar
        if bar is None:
            bar = Progress(total, "compressing", args.quiet, unit="tensor")
        if not args.quiet:
            bar.write(f"{weights.printable(record['name'])}: {'x'.join(map(str, record['shape']))}"
                      f" width {record['width']}, {record['bits_per_entry']:.3f} bits/entry, "
                      f"error {record['rel_error']:.4%}, {record['sparse']} sparse entries, "
                      f"{record['seconds']:.2f} s{' (resumed)' if record['resumed'] else ''}")
        bar.update_to(done)

    try:
        result = weights.compress(args.input, args.output, progress=progress, **kw)
    finally:
        if bar is not None:
            bar.close()
    print(result["summary"]["line"])
    print(f"wrote {args.output} and {args.output}{weights.REPORT_SUFFIX}")
    return 0


def cmd_expand(args):
    from signcut import weights
    dtype = None if args.dtype == "orig" else args.dtype
    weights.expand(args.input, args.output, dtype=dtype)
    print(f"wrote {args.output}")
    return 0


def cmd_info(args):
    from signcut import weights
    path = args.input
    kind, meta = weights.read_kind(path)     # WeightsError: one line, exit status 2
    if kind == "signcut":
        loaded = signcut.load(path)
        items = loaded.items() if isinstance(loaded, dict) else [("signcut", loaded)]
        print(f"{path}: signcut file")
        print("| name | shape | width | bits/entry | rel. error |")
        print("|---|---|---:|---:|---:|")
        for name, sc in items:
            print(f"| {name} | {'x'.join(map(str, sc.shape))} | {sc.width} | "
                  f"{sc.bits_per_entry:.3f} | {sc.rel_error:.4%} |")
        return 0
    tensors = meta["tensors"]
    comp = [t for t in tensors if t["kind"] == "signcut"]
    budget = weights.Settings(meta.get("bits_per_entry"), meta.get("ratio"),
                              meta.get("rtol")).describe()
    print(f"{path}: compressed model weights, {len(comp)} tensors compressed at {budget} "
          f"(seed {meta['seed']}), {len(tensors) - len(comp)} copied through"
          + (f" into {meta['passthrough']}" if meta.get("passthrough") else ""))
    print("| name | dtype | shape | kind | width | bits/entry | rel. error | sparse entries "
          "| note |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    for t in tensors:
        shape = "x".join(map(str, t["shape"]))
        name = weights.printable(t["name"])
        if t["kind"] == "signcut":
            high = t.get("high_error", t.get("outlier"))       # "outlier" in older files
            note = f"error > {weights.HIGH_ERROR_FACTOR:g}x median" if high else ""
            sparse = "" if t.get("sparse") is None else t["sparse"]
            print(f"| {name} | {t['dtype']} | {shape} | signcut | {t['width']} | "
                  f"{t['bits_per_entry']:.3f} | {t['rel_error']:.4%} | {sparse} | {note} |")
        else:
            print(f"| {name} | {t['dtype']} | {shape} | copied | | | | | {t['reason']} |")
    return 0


# ------------------------------------------------------------------ main
def build_parser():
    ap = argparse.ArgumentParser(
        prog="signcut", description="Compress pictures into 1-bit pieces with signed cuts.")
    ap.add_argument("--version", action="version", version=f"signcut {signcut.__version__}")
    sub = ap.add_subparsers(dest="command", metavar="{demo,image,weights,expand,info}")
    sub.required = True

    demo = sub.add_parser("demo", help="compress the bundled cat at several budgets",
                          description="Compress the bundled cat at several budgets: writes the "
                          "reconstructions, their signcut files and a contact sheet, and "
                          "prints a Markdown table.")
    demo.add_argument("--out", default="signcut-demo", metavar="DIR",
                      help="output folder (default: %(default)s)")
    demo.add_argument("--ratios", type=_positive(float), nargs="+", default=list(DEMO_RATIOS),
                      metavar="R", help="budgets as fractions of the raw 8-bit size "
                      "(default: %(default)s)")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help="(default: %(default)s)")
    demo.add_argument("--threads", type=_positive(int), default=None, metavar="N",
                      help="threads (default: all)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)

    img = sub.add_parser("image", help="compress a picture, or decode a signcut file",
                         description="Compress a picture into a signcut file, or decode a "
                         "signcut file (recognised by its header) into a picture.")
    img.add_argument("input", help="a picture (PNG, JPEG, ...) or a signcut file")
    img.add_argument("-o", "--output", required=True,
                     help="the signcut file to write (encoding) or the picture (decoding)")
    budget = img.add_argument_group("budget (encoding; default --ratio 0.05)")
    budget.add_argument("--ratio", type=_positive(float), default=None,
                        help="stored bytes over the raw 8-bit pixels")
    budget.add_argument("--bits-per-pixel", type=_positive(float), default=None,
                        help="stored bits per pixel (all channels)")
    budget.add_argument("--width", type=_positive(int), default=None,
                        help="the most cuts per plane group")
    img.add_argument("--tile", type=_parse_tile, default=None, metavar="N|HxW|none",
                     help="block size of the layout (default: 12; none: no tiling)")
    img.add_argument("--color", choices=("ycbcr", "rgb"), default=None,
                     help="colour basis (default: ycbcr)")
    img.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    img.add_argument("--threads", type=_positive(int), default=None, metavar="N",
                     help="threads (default: all)")
    img.add_argument("--preview", type=_positive(int), default=None, metavar="N",
                     help="also write a picture every N cuts: OUTPUT-preview-0001.png, ...")
    img.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    img.set_defaults(func=cmd_image)

    wts = sub.add_parser("weights", help="compress a safetensors checkpoint",
                         description="Compress every floating tensor of 2 or more dimensions "
                         "of a .safetensors file (or a folder of shards with an index.json) "
                         "into one signcut file; other tensors are copied through into "
                         "OUT.passthrough.safetensors. Writes a per-tensor report to "
                         "OUT.report.csv. An interrupted run resumes from OUT.parts/.")
    wts.add_argument("input", help="a .safetensors file or a folder with shards")
    wts.add_argument("-o", "--output", required=True, help="the signcut file to write")
    wts.add_argument("--bits-per-entry", type=_positive(float), default=None,
                     help="budget per compressed tensor (default: 8 unless --ratio or --rtol)")
    wts.add_argument("--ratio", type=_positive(float), default=None,
                     help="stored bytes over each tensor's bytes in its own dtype")
    wts.add_argument("--rtol", type=_positive(float), default=None,
                     help="stop each tensor at this relative Frobenius error")
    wts.add_argument("--effort", choices=("fast", "default", "best"), default="default",
                     help="search effort of each cut (default: %(default)s)")
    wts.add_argument("--threads", type=_positive(int), default=None, metavar="N",
                     help="threads of each decomposition with --jobs 1 (default: all)")
    wts.add_argument("--dry-run", action="store_true",
                     help="print what would be compressed, and at most how many cuts and "
                     "bytes, without writing anything")
    wts.add_argument("--include", default=None, metavar="RE",
                     help="compress only tensors whose name matches")
    wts.add_argument("--exclude", default=None, metavar="RE",
                     help="copy through tensors whose name matches")
    wts.add_argument("--min-size", type=int, default=0, metavar="N",
                     help="copy through tensors of fewer entries (default: %(default)s)")
    wts.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="processes (default: %(default)s)")
    wts.add_argument("--scheduler", default=None, metavar="ADDR",
                     help="dask scheduler address (tcp://host:port); needs dask.distributed")
    wts.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    wts.add_argument("--outliers", type=_outliers, default="auto", metavar="auto|off|Q",
                     help="keep outliers apart as a sparse part, paid from the budget: 'auto' "
                     "(entries beyond 8 robust standard deviations), 'off', or a fraction "
                     "Q of the entries (default: %(default)s)")
    wts.add_argument("--scales", choices=("none", "rows", "cols", "both", "auto"),
                     default="none", help="row and column scale vectors per tensor, paid from "
                     "the budget; 'both' measured most faithful on a sentence embedder "
                     "(default: %(default)s)")
    wts.add_argument("--calibration", default=None, metavar="STATS.safetensors",
                     help="per weight name, the RMS of each input feature of that layer "
                     "(signcut.weights.calibration_stats): the tensors it names are fitted in "
                     "that weighted norm")
    wts.add_argument("-q", "--quiet", action="store_true",
                     help="no progress bar and no per-tensor lines")
    wts.set_defaults(func=cmd_weights)

    exp = sub.add_parser("expand", help="write a plain safetensors checkpoint back",
                         description="Expand a file written by 'signcut weights' into a plain "
                         "safetensors checkpoint with the original names and shapes.")
    exp.add_argument("input", help="a file written by 'signcut weights'")
    exp.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    exp.add_argument("--dtype", choices=("bf16", "f16", "f32", "orig"), default="orig",
                     help="dtype of the expanded tensors (default: each tensor's original "
                     "one)")
    exp.set_defaults(func=cmd_expand)

    inf = sub.add_parser("info", help="what a signcut file holds",
                         description="List the tensors of a signcut file: names, shapes, "
                         "widths, bits per entry and errors.")
    inf.add_argument("input", help="a signcut file")
    inf.set_defaults(func=cmd_info)
    return ap


def main(argv=None):
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "image":
        from signcut import image
        args.tile = image.DEFAULT_TILE if args.tile is None else (args.tile or None)
        if args.color is None:
            args.color = image.DEFAULT_COLOR
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(str(exc))
    except signcut.FormatError as exc:
        return _fail(str(exc))
    except (OSError, ValueError, TypeError) as exc:
        return _fail(_describe(exc))
    except MemoryError as exc:
        return _fail(f"not enough memory: {exc}" if str(exc) else "not enough memory")
    except KeyboardInterrupt:
        print("signcut: interrupted", file=sys.stderr)
        return 130


def _describe(exc):
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        return f"{exc.strerror}: {name!r}" if name else exc.strerror
    return str(exc) or type(exc).__name__


def _fail(message):
    message = " ".join(str(message).split())        # one line
    print(f"signcut: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

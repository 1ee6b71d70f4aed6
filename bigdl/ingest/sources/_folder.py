"""A folder of images with one sub-folder per class: listing it in sorted order.

Directory links are never followed, at any depth: one can lead out of the
folder or into a loop (``imgs/alias -> imgs`` would add a class holding a copy
of every image).  Each skipped link is counted in the listing (the store's
``source`` attribute), shown by ``info()`` and named in a warning.  A link to
a file is read like the file: it names one image and cannot multiply the
tree, wherever it points; a broken one is rejected as "file not found".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest.sources._listing import FilePart, ImageListing

__all__ = ["IMAGE_SUFFIXES", "list_image_folder", "folder_listing", "remote_folder_listing"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LINKS_NAMED = 10  # skipped links named in the warning (all are counted)


def _is_image(filename: str) -> bool:
    return filename.lower().endswith(IMAGE_SUFFIXES) and not filename.startswith(".")


def _entries(directory: str) -> list:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as error:
        # os.walk would skip it silently, and its images with it.
        raise SourceError(f"Cannot list the folder {directory!r} ({error.strerror or error}); every sub-folder "
                          "of an image folder must be readable.") from None


def _scan(root: Path) -> tuple[dict[str, list[str]], list[str], int]:
    """Images by class folder, the directory links skipped and the file links found (non-hidden entries)."""
    found: dict[str, list[str]] = {}
    skipped: list[str] = []
    file_links = 0
    for top in sorted(_entries(str(root)), key=lambda entry: entry.name):
        if top.name.startswith("."):
            continue
        if top.is_symlink():
            if top.is_dir():
                skipped.append(top.name)
            continue  # a file directly in the root is no class's sample, linked or not
        if not top.is_dir():
            continue
        names = []
        # Plain strings and scandir entries (their link and type bits come with the listing):
        # listing 100,000 files with pathlib or an lstat per file costs seconds.
        pending = [(top.path, top.name)]
        while pending:
            directory, relative = pending.pop()
            for entry in _entries(directory):
                if entry.name.startswith("."):
                    continue
                path = f"{relative}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, path))
                elif entry.is_symlink() and entry.is_dir():
                    skipped.append(path)
                elif _is_image(entry.name):
                    names.append(path)
                    file_links += entry.is_symlink()
        if names:
            found[top.name] = sorted(names)
    return found, sorted(skipped), file_links


def _skipped_note(root: Path, skipped: list[str]) -> str:
    if not skipped:
        return ""
    shown = ", ".join(repr(name) for name in skipped[:LINKS_NAMED]) + (", ..." if len(skipped) > LINKS_NAMED else "")
    return (f" {len(skipped)} directory link(s) in it were not followed ({shown}): bigdl never follows "
            "directory links; list such images in a manifest (path,label) instead.")


def list_image_folder(source) -> tuple[Path, list[str], list[tuple[str, int]]]:
    """The root, the class names and the sorted ``(relative path, class code)`` list of an image folder."""
    return _list(source)[:3]


def _list(source) -> tuple[Path, list[str], list[tuple[str, int]], list[str], int]:
    root = Path(source).expanduser()
    if not root.exists():
        raise SourceNotFoundError(f"The image folder {str(source)!r} does not exist.")
    if not root.is_dir():
        raise SourceNotFoundError(
            f"{str(source)!r} is a file; images() expects a folder with one sub-folder of images per class.")
    root = root.absolute()
    found, skipped, file_links = _scan(root)
    if not found:
        loose = [p.name for p in root.iterdir() if p.is_file() and _is_image(p.name)]
        hint = (f" It holds {len(loose)} image(s) directly; move them into one sub-folder per class."
                if loose else "")
        raise SourceNotFoundError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) found in class sub-folders of {str(source)!r}.{hint}"
            f"{_skipped_note(root, skipped)}")
    if len(found) < 2:
        only = next(iter(found))
        raise SchemaError(
            f"Only one class ({only!r}) has images in {str(source)!r}; classification needs at least two "
            f"class sub-folders (each sub-folder name is a class).{_skipped_note(root, skipped)}")
    if skipped:
        shown = ", ".join(f"{name} -> {os.readlink(root / name)}" for name in skipped[:LINKS_NAMED])
        logger.warning("%s: skipped %d directory link(s), not followed (they can lead out of the folder or into a "
                       "loop): %s%s", root, len(skipped), shown, ", ..." if len(skipped) > LINKS_NAMED else "")
    class_names = sorted(found)
    files = [(name, code) for code, label in enumerate(class_names) for name in found[label]]
    return root, class_names, files, skipped, file_links


def folder_listing(root: str) -> ImageListing:
    """The listing of a folder of class sub-folders: one file part, keys the relative paths."""
    root_path, class_names, files, skipped, file_links = _list(root)
    root = str(root_path)
    items = [(os.path.join(root, name), name, code, None) for name, code in files]
    description = {"format": "image-folder", "root": str(root_path), "files": len(files),
                   "skipped_directory_links": skipped, "file_links": file_links}
    return ImageListing("image-folder", root_path.name, class_names, [FilePart(items)], description,
                        "relative path")


def remote_folder_listing(url: str) -> ImageListing:
    """The listing of a folder of class sub-folders behind an fsspec URL (object storage has no links).

    The same rules as a local folder: hidden names are skipped, images at
    any depth under a class prefix belong to that class, an object directly
    under the root belongs to none.  The images are read by the tasks
    through fsspec.
    """
    from bigdl.store._location import display, filesystem

    fs, root = filesystem(url)
    root = root.rstrip("/")
    found: dict[str, list[str]] = {}
    loose = 0
    for path in sorted(fs.find(root)):
        relative = path[len(root) + 1:]
        parts = relative.split("/")
        if any(part.startswith(".") for part in parts) or not _is_image(parts[-1]):
            continue
        if len(parts) == 1:
            loose += 1
            continue
        found.setdefault(parts[0], []).append(relative)
    if not found:
        hint = f" It holds {loose} image(s) directly; move them into one prefix per class." if loose else ""
        raise SourceNotFoundError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) found in class sub-folders of {display(url)!r}.{hint}")
    if len(found) < 2:
        raise SchemaError(
            f"Only one class ({next(iter(found))!r}) has images in {display(url)!r}; classification needs at least "
            "two class sub-folders (each sub-folder name is a class).")
    class_names = sorted(found)
    items = [(fs.unstrip_protocol(f"{root}/{name}"), name, code, None)
             for code, label in enumerate(class_names) for name in sorted(found[label])]
    description = {"format": "image-folder", "root": display(url), "files": len(items),
                   "skipped_directory_links": [], "file_links": 0}
    return ImageListing("image-folder", root.rsplit("/", 1)[-1], class_names, [FilePart(items)], description,
                        "relative path")

"""A folder of images with one sub-folder per class: listing it in sorted order."""

from __future__ import annotations

import os
from pathlib import Path

from bigdl.errors import SchemaError, SourceNotFoundError
from bigdl.ingest.sources._listing import FilePart, ImageListing

__all__ = ["IMAGE_SUFFIXES", "list_image_folder", "folder_listing"]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _is_image(filename: str) -> bool:
    return filename.lower().endswith(IMAGE_SUFFIXES) and not filename.startswith(".")


def list_image_folder(source) -> tuple[Path, list[str], list[tuple[str, int]]]:
    """The root, the class names and the sorted ``(relative path, class code)`` list of an image folder."""
    root = Path(source).expanduser()
    if not root.exists():
        raise SourceNotFoundError(f"The image folder {str(source)!r} does not exist.")
    if not root.is_dir():
        raise SourceNotFoundError(
            f"{str(source)!r} is a file; images() expects a folder with one sub-folder of images per class.")
    root = root.absolute()
    found: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        names = []
        # Plain strings, not Path objects: listing 100,000 files with pathlib costs seconds.
        for directory, subdirectories, filenames in os.walk(folder):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            relative = os.path.relpath(directory, root).replace(os.sep, "/")
            names.extend(f"{relative}/{filename}" for filename in filenames if _is_image(filename))
        if names:
            found[folder.name] = sorted(names)
    if not found:
        loose = [p.name for p in root.iterdir() if p.is_file() and _is_image(p.name)]
        hint = (f" It holds {len(loose)} image(s) directly; move them into one sub-folder per class."
                if loose else "")
        raise SourceNotFoundError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) found in class sub-folders of {str(source)!r}.{hint}")
    if len(found) < 2:
        only = next(iter(found))
        raise SchemaError(
            f"Only one class ({only!r}) has images in {str(source)!r}; classification needs at least two "
            "class sub-folders (each sub-folder name is a class).")
    class_names = sorted(found)
    files = [(name, code) for code, label in enumerate(class_names) for name in found[label]]
    return root, class_names, files


def folder_listing(root: str) -> ImageListing:
    """The listing of a folder of class sub-folders: one file part, keys the relative paths."""
    root_path, class_names, files = list_image_folder(root)
    root = str(root_path)
    items = [(os.path.join(root, name), name, code, None) for name, code in files]
    return ImageListing("image-folder", root_path.name, class_names, [FilePart(items)],
                        {"format": "image-folder", "root": str(root_path), "files": len(files)}, "relative path")

"""Dataset loaders shared by the registrations: image/label pairs found by stem
in two folders, or listed by id in a split file; each checks the whole dataset
before training starts and names the first missing file."""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...errors import InputError, MissingInputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _files_by_stem(folder, extensions):
    """{relative path without extension: path} of the files under ``folder``."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() in extensions:
                path = os.path.join(parent, name)
                key = os.path.normpath(os.path.join(os.path.relpath(parent, folder), stem))
                if key in found:
                    raise InputError(f"{path} and {found[key]} have the same stem: keep one of them")
                found[key] = path
    return found


def _require_folder(folder, prepare=None):
    """A MissingInputError naming ``folder`` when it does not exist, with the
    ``prepare`` command that makes it, if there is one."""
    if not os.path.isdir(folder):
        how = f"run `{prepare}`" if prepare else "check the dataset root (DETECTRON2_DATASETS)"
        raise MissingInputError(f"Dataset folder {folder} does not exist: {how}")


def pair_images_with_labels(image_dir, label_dir, prepare=None):
    """[(image, label PNG)] sorted by path; an image without a label, or a
    label without an image, raises an InputError naming it. ``prepare`` is the
    command that makes missing labels."""
    _require_folder(image_dir)
    _require_folder(label_dir, prepare)
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
    labels = _files_by_stem(label_dir, (".png",))
    if not images:
        raise MissingInputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {image_dir}")
    for key in sorted(images):
        if key not in labels:
            how = f": run `{prepare}`" if prepare else ""
            raise InputError(f"{images[key]} has no label: expected {os.path.join(label_dir, key)}.png{how}")
    for key in sorted(labels):
        if key not in images:
            raise InputError(f"{labels[key]} has no image with the same stem under {image_dir}")
    return [(images[key], labels[key]) for key in sorted(images)]


def load_sem_seg_pairs(image_dir, label_dir, prepare=None):
    """detectron2 dataset dicts of :func:`pair_images_with_labels`."""
    pairs = pair_images_with_labels(image_dir, label_dir, prepare)
    return [{"file_name": image, "sem_seg_file_name": label} for image, label in pairs]


def load_sem_seg_list(list_file, image_dir, label_dir, image_ext=".jpg", prepare=None):
    """detectron2 dataset dicts of the ids in ``list_file`` (one a line):
    ``image_dir/<id><image_ext>`` with ``label_dir/<id>.png``."""
    if not os.path.isfile(list_file):
        how = f"run `{prepare}`" if prepare else "check the dataset root (DETECTRON2_DATASETS)"
        raise MissingInputError(f"Split file {list_file} does not exist: {how}")
    _require_folder(image_dir)
    _require_folder(label_dir, prepare)
    with open(list_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise InputError(f"{list_file} lists no images")
    records = []
    for image_id in ids:
        image, label = os.path.join(image_dir, image_id + image_ext), os.path.join(label_dir, image_id + ".png")
        if not os.path.isfile(image):
            raise MissingInputError(f"{image} (listed in {list_file}) does not exist")
        if not os.path.isfile(label):
            how = f": run `{prepare}`" if prepare else ""
            raise MissingInputError(f"{label}, the label of {image_id} in {list_file}, does not exist{how}")
        records.append({"file_name": image, "sem_seg_file_name": label})
    return records


def register_sem_seg(name, loader, **metadata):
    """(Re-)register dataset ``name`` with its loader and metadata."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)

"""Annotations from and to labelling tools: CVAT XML, Label Studio JSON and a plain tracks CSV.

`importer.import_annotations` turns exports into an AVA-format dataset (`sfdet data import`);
`exporter.export_tracks` turns predict's tracks CSVs into pre-annotations (`sfdet data export`).
One module per format (`cvat`, `labelstudio`, `tracks_csv`) reads into the common model of `model`
(tracks of key shapes with each tool's interpolation rules); `videos` finds the videos and their frame times.
`act_pickle.import_benchmark` imports the tube benchmarks' GT pickles (UCF101-24, JHMDB-21, MultiSports).
"""

from sfdet.annotations.exporter import EXPORT_FORMATS, export_tracks
from sfdet.annotations.importer import FORMATS, import_annotations
from sfdet.annotations.model import AnnotationError

__all__ = ["EXPORT_FORMATS", "FORMATS", "AnnotationError", "export_tracks", "import_annotations"]

"""Person detection tools for AVA-format datasets: read keyframes (`keyframes.py`), make proposals
(`proposals.py`, `sfdet proposals`), fine-tune a detector (`train_detector.py`, `sfdet train-detector`).

The detectors themselves (every backend, the `detector.pt` this package's trainer writes, and the
one factory `build_person_detector`) live in `sfdet.persons`.
"""

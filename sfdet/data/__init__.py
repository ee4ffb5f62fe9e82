"""AVA-format data: file readers/writers (`ava`), clips from videos (`video`) or extracted frames
(`frames`), the keyframe -> frames rule (`clip_sampling`), transforms, training labels, the
`AvaDataset` with its `collate_fn`, and the `sfdet data check` report (`check`).

Modules are imported where used (no re-exports here), so `sfdet.config` can read `DataConfig`
without loading PyAV or torch.
"""

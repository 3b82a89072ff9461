"""How the three candidate grammar engines handle json_schema(labels): what they enforce, compile and mask times.

The measurement behind the choice of llguidance (core/planners/constrained.py, docs/benchmarks.md).
Each engine gets the real schema (all 19 labels; llguidance without ``uniqueItems``, which it
refuses), compact separators, a tokenizer built in memory with VOCAB tokens:

    pip install llguidance outlines-core; pip install --no-deps xgrammar apache-tvm-ffi
    .venv/bin/python -m bench.grammar_libraries 512
    .venv/bin/python -m bench.grammar_libraries 32000   # trains a 32k BPE on site-packages sources (~10 s)

"accepts" lists what each engine lets through of six contract violations (True = not caught).
"""
import glob
import json
import sys
import time

from tests.tiny_llm import build_tokenizer, _corpus
from core.prompting import json_schema
from core.rules import load_rules

VOCAB = int(sys.argv[1])
if VOCAB <= 1000:
    tok = build_tokenizer(VOCAB)
else:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from tests.tiny_llm import SPECIAL_TOKENS, CHAT_TEMPLATE
    files = sorted(glob.glob(f"{sys.prefix}/lib/python3.11/site-packages/**/*.py", recursive=True))[:4000]
    texts = [open(f, errors="ignore").read() for f in files] + _corpus()
    data = json.load(open("../shared/data/seed_chat_dataset.json"))
    texts.append(json.dumps(data, ensure_ascii=False))
    b = Tokenizer(models.BPE()); b.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False); b.decoder = decoders.ByteLevel()
    t = time.time()
    b.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=b, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)
    print("trained vocab", len(tok), f"{time.time()-t:.1f}s")
V = len(tok)
rules = load_rules()
L1 = list(rules.default_labels) + ["Selection"]
L2 = ["Background", "Face", "Hair", "Upper-clothes", "Pants", "Selection"]
valid = '[{"command":"change","paras":[["Background","Upper-clothes"],"blue sky, white T-shirt"]},{"command":"adjust","paras":["brightness",0.3,[]]},{"command":"blur","paras":[["Background"],0.5]},{"command":"recolor","paras":[["Pants"],"navy"]}]'
bad = {
  "dup targets": '[{"command":"remove","paras":[["Hair","Hair"]]}]',
  "amount 2": '[{"command":"adjust","paras":["brightness",2,[]]}]',
  "strength 0": '[{"command":"blur","paras":[["Hair"],0]}]',
  "blank text": '[{"command":"style","paras":[" "]}]',
  "bad colour": '[{"command":"recolor","paras":[["Hair"],"qqq"]}]',
  "unknown label": '[{"command":"remove","paras":[["Skin"]]}]',
}
ids_valid = tok(valid)["input_ids"]
import numpy as np

def report(name, t_tok, compile_times, mask_us, accepts):
    print(f"{name:12s} V={V} tokenizer-info {t_tok*1000:.0f} ms; compile {', '.join(f'{c*1000:.1f}' for c in compile_times)} ms; "
          f"mask {mask_us:.0f} us/token; accepts: {accepts}")

# --- llguidance
import llguidance, llguidance.hf
t = time.time(); lt = llguidance.hf.from_tokenizer(tok); t_tok = time.time() - t
def strip(o):
    if isinstance(o, dict): return {k: strip(v) for k, v in o.items() if k != "uniqueItems"}
    if isinstance(o, list): return [strip(v) for v in o]
    return o
def ll_compile(labels):
    g = llguidance.LLMatcher.grammar_from_json_schema(strip(json_schema(labels)), defaults={"whitespace_flexible": False})
    m = llguidance.LLMatcher(lt, g); assert not m.is_error(), m.get_error(); return g, m
cts = []
for labels in (L1, L2, L1[:10]):
    t = time.time(); g, m = ll_compile(labels); m.compute_bitmask(); cts.append(time.time() - t)
g, m = ll_compile(L1)
t = time.time()
for i in ids_valid:
    m.compute_bitmask(); assert m.consume_token(i), tok.decode([i])
mask_us = (time.time() - t) / len(ids_valid) * 1e6
acc = {}
for k, s in bad.items():
    m = llguidance.LLMatcher(lt, g); n = m.validate_tokens(tok(s)["input_ids"]); acc[k] = n == len(tok(s)["input_ids"])
report("llguidance", t_tok, cts, mask_us, acc)

# --- xgrammar
import xgrammar as xgr, torch
t = time.time(); info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=V); t_tok = time.time() - t
comp = xgr.GrammarCompiler(info, cache_enabled=False)
cts = []
for labels in (L1, L2, L1[:10]):
    t = time.time(); cg = comp.compile_json_schema(json.dumps(json_schema(labels)), any_whitespace=False, separators=(",", ":")); cts.append(time.time() - t)
cg = comp.compile_json_schema(json.dumps(json_schema(L1)), any_whitespace=False, separators=(",", ":"))
m = xgr.GrammarMatcher(cg); bm = xgr.allocate_token_bitmask(1, V)
t = time.time()
for i in ids_valid:
    m.fill_next_token_bitmask(bm); assert m.accept_token(i), tok.decode([i])
mask_us = (time.time() - t) / len(ids_valid) * 1e6
acc = {}
for k, s in bad.items():
    m = xgr.GrammarMatcher(cg); acc[k] = all(m.accept_token(i) for i in tok(s)["input_ids"])
report("xgrammar", t_tok, cts, mask_us, acc)

# --- outlines-core
from outlines_core import Vocabulary, Index, Guide
from outlines_core.json_schema import build_regex_from_schema
t = time.time()
from tokenizers.pre_tokenizers import ByteLevel
def to_bytes(s):
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    dec = {v: k for k, v in bytes_to_unicode().items()}
    return bytes(dec[c] for c in s)
vocab = {}
for s, i in tok.get_vocab().items():
    if s in tok.all_special_tokens: continue
    vocab.setdefault(to_bytes(s), []).append(i)
ov = Vocabulary(tok.eos_token_id, vocab); t_tok = time.time() - t
cts = []
try:
    for labels in (L1, L2, L1[:10]):
        t = time.time(); rx = build_regex_from_schema(json.dumps(json_schema(labels))); ix = Index(rx, ov); cts.append(time.time() - t)
    rx = build_regex_from_schema(json.dumps(json_schema(L1))); ix = Index(rx, ov)
    gd = Guide(ix); t = time.time()
    for i in ids_valid:
        gd.get_tokens(); gd.advance(i)
    mask_us = (time.time() - t) / len(ids_valid) * 1e6
    acc = {}
    for k, s in bad.items():
        acc[k] = Guide(ix).accepts_tokens(tok(s)["input_ids"])
    report("outlines", t_tok, cts, mask_us, acc)
except Exception as e:
    print("outlines-core failed:", type(e).__name__, str(e)[:300], "compiled so far", cts)

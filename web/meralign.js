// MERAlign in the browser: zero-shot music emotion recognition, computed on this machine (no server).
//
// Loads an exported model folder (meralign.onnx_export.export_onnx: onnx/audio_model.onnx, onnx/text_model.onnx,
// onnx/meralign_onnx.json, tokenizer.json), decodes a file with WebAudio, resamples it to the model's rate,
// cuts it into segments, embeds segments and labels with onnxruntime-web (WASM) and scores each segment with
// softmax(exp(logit_scale) * cosine), as the Python pipeline does. Nothing is fetched from outside the page's
// own origin: the WASM files come from node_modules next to this file.

import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";
import { Tokenizer } from "./node_modules/@huggingface/tokenizers/dist/tokenizers.min.mjs";

ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;
// threads need SharedArrayBuffer, which only a cross-origin-isolated page (COOP/COEP headers) has
ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

async function fetchOk(url, kind) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not load ${url}: HTTP ${response.status}`);
  return kind === "json" ? response.json() : response.arrayBuffer();
}

/** The model folder's sessions, tokenizer and settings (segment length, calibration) from meralign_onnx.json. */
export async function loadModel(modelUrl) {
  const base = modelUrl.endsWith("/") ? modelUrl : `${modelUrl}/`;
  const info = await fetchOk(`${base}onnx/meralign_onnx.json`, "json");
  const [tokenizerJson, tokenizerConfig, audioBytes, textBytes] = await Promise.all([
    fetchOk(`${base}tokenizer.json`, "json"),
    fetchOk(`${base}tokenizer_config.json`, "json"),
    fetchOk(`${base}onnx/${info.files.audio.fp32}`),
    fetchOk(`${base}onnx/${info.files.text.fp32}`),
  ]);
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const audio = await ort.InferenceSession.create(audioBytes, options);
  const text = await ort.InferenceSession.create(textBytes, options);
  const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  const padToken = tokenizerConfig.pad_token?.content ?? tokenizerConfig.pad_token ?? "[PAD]";
  const padId = tokenizer.token_to_id(padToken) ?? 0;
  return { info, audio, text, tokenizer, padId };
}

// ------------------------------------------------------------------------------------------------- audio
/** The sampling rate in a WAV header, or null for any other format. */
export function wavSampleRate(arrayBuffer) {
  const view = new DataView(arrayBuffer);
  const tag = (offset) => String.fromCharCode(...new Uint8Array(arrayBuffer, offset, 4));
  if (arrayBuffer.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return null;
  for (let offset = 12; offset + 8 <= arrayBuffer.byteLength; offset += 8 + view.getUint32(offset + 4, true)) {
    if (tag(offset) === "fmt ") return view.getUint32(offset + 12, true);
  }
  return null;
}

function downmix(buffer) {
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const channel = buffer.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i];
  }
  if (buffer.numberOfChannels > 1) for (let i = 0; i < mono.length; i++) mono[i] /= buffer.numberOfChannels;
  return mono;
}

// ---------------------------------------------------------------- resampling exactly as scipy's resample_poly
const gcd = (a, b) => (b ? gcd(b, a % b) : a);

function besselI0(x) {  // power series; converges fast for the Kaiser window's arguments (<= beta = 5)
  let sum = 1, term = 1;
  for (let k = 1; term > 1e-17 * sum; k++) { term *= (x / (2 * k)) ** 2; sum += term; }
  return sum;
}

/** scipy.signal.firwin(numtaps, cutoff, window=("kaiser", 5.0)) scaled by `gain`: a windowed-sinc lowpass. */
function kaiserLowpass(numtaps, cutoff, gain, beta = 5.0) {
  const taps = new Float64Array(numtaps);
  const alpha = (numtaps - 1) / 2;
  let total = 0;
  for (let n = 0; n < numtaps; n++) {
    const m = n - alpha;
    const sinc = m === 0 ? 1 : Math.sin(Math.PI * cutoff * m) / (Math.PI * cutoff * m);
    const ratio = (2 * n) / (numtaps - 1) - 1;
    taps[n] = cutoff * sinc * (besselI0(beta * Math.sqrt(Math.max(0, 1 - ratio * ratio))) / besselI0(beta));
    total += taps[n];
  }
  return taps.map((t) => (t / total) * gain);
}

/**
 * scipy.signal.resample_poly(samples, up, down) with its defaults (Kaiser beta 5, 20 * max(up, down) + 1 taps,
 * zero padding): what audio_meralign.resample uses, so a page and the Python pipeline see the same samples.
 */
export function resamplePoly(samples, fromRate, toRate) {
  const g = gcd(fromRate, toRate);
  const up = toRate / g, down = fromRate / g;
  if (up === 1 && down === 1) return Float32Array.from(samples);
  const maxRate = Math.max(up, down), halfLength = 10 * maxRate;
  const taps = kaiserLowpass(2 * halfLength + 1, 1 / maxRate, up);
  const prePad = down - (halfLength % down);  // scipy aligns output sample 0 with input sample 0
  const skip = Math.floor((halfLength + prePad) / down);
  const length = Math.ceil((samples.length * up) / down);
  const out = new Float32Array(length);
  for (let k = 0; k < length; k++) {
    const position = (k + skip) * down - prePad;  // index into the upsampled signal, relative to taps[0]
    let sum = 0;
    const first = Math.max(0, Math.ceil((position - taps.length + 1) / up));
    const last = Math.min(samples.length - 1, Math.floor(position / up));
    for (let i = first; i <= last; i++) sum += taps[position - i * up] * samples[i];
    out[k] = sum;
  }
  return out;
}

/**
 * Mono samples at `rate`. "auto" (default): for a WAV file, decode at its own rate (read from the header), downmix,
 * then `resamplePoly`, as the Python pipeline does; any other format: "decode". "decode": decodeAudioData in an
 * OfflineAudioContext running at `rate` (the browser's decoder resamples). "render": decode at the file's rate
 * (WAV only) and play it through an OfflineAudioContext at `rate` (an AudioBufferSourceNode interpolates).
 */
export async function decodeMono(arrayBuffer, rate, method = "auto") {
  const nativeRate = method === "decode" ? null : wavSampleRate(arrayBuffer);
  const decoded = await new OfflineAudioContext(1, 1, nativeRate ?? rate).decodeAudioData(arrayBuffer.slice(0));
  if (decoded.sampleRate === rate) return downmix(decoded);
  if (method !== "render") return resamplePoly(downmix(decoded), decoded.sampleRate, rate);
  const length = Math.ceil((decoded.length * rate) / decoded.sampleRate);
  const context = new OfflineAudioContext(decoded.numberOfChannels, length, rate);
  const source = context.createBufferSource();
  source.buffer = decoded;
  source.connect(context.destination);
  source.start(0);
  return downmix(await context.startRendering());
}

/** Non-overlapping, zero-padded segments as audio_meralign.iter_segments cuts them (the last kept if >= half). */
export function cutSegments(samples, info) {
  const size = Math.round(info.segment_seconds * info.sampling_rate);
  const segments = [];
  for (let index = 0; ; index++) {
    const start = index * size;
    const valid = Math.min(size, samples.length - start);
    if (valid <= 0 || (index > 0 && valid < info.min_last_fraction * size)) break;
    const values = new Float32Array(size);
    values.set(samples.subarray(start, start + valid));
    segments.push({ start: start / info.sampling_rate, end: (start + valid) / info.sampling_rate, values,
                    valid: Math.max(valid, info.min_valid_samples) });
  }
  if (!segments.length) throw new Error("the audio has no samples");
  return segments;
}

// ------------------------------------------------------------------------------------------- embeddings
export async function embedSegment(model, segment) {
  const size = segment.values.length;
  const mask = new BigInt64Array(size);
  mask.fill(1n, 0, Math.min(segment.valid, size));
  const output = await model.audio.run({
    input_values: new ort.Tensor("float32", segment.values, [1, size]),
    attention_mask: new ort.Tensor("int64", mask, [1, size]),
  });
  return output[model.info.outputs.audio].data;
}

/** Token ids as the pipeline makes them: special tokens added, cut to text_max_length keeping the last one. */
function encodeLabel(model, text) {
  const ids = model.tokenizer.encode(text).ids;
  const max = model.info.text_max_length;
  return ids.length > max ? [...ids.slice(0, max - 1), ids[ids.length - 1]] : ids;
}

/** The label-space vectors of `labels`, as the pipeline computes them: each label under every template of the
 * model's label space (underscores read as spaces there), encoded, then averaged over the templates and
 * re-normalised (scoring_meralign.combine_templates). */
export async function embedLabels(model, labels) {
  const { templates, label_underscores_to_spaces: underscores } = model.info;
  const words = labels.map((label) => (underscores ? label.replaceAll("_", " ") : label));
  const texts = words.flatMap((word) => templates.map((template) => template.replace("{}", word)));
  const encoded = texts.map((text) => encodeLabel(model, text));
  const width = Math.max(...encoded.map((ids) => ids.length));
  const ids = new BigInt64Array(texts.length * width).fill(BigInt(model.padId));
  const mask = new BigInt64Array(texts.length * width);
  encoded.forEach((row, r) => row.forEach((id, t) => { ids[r * width + t] = BigInt(id); mask[r * width + t] = 1n; }));
  const output = await model.text.run({
    input_ids: new ort.Tensor("int64", ids, [texts.length, width]),
    attention_mask: new ort.Tensor("int64", mask, [texts.length, width]),
  });
  const flat = output[model.info.outputs.text].data;
  const dim = flat.length / texts.length;
  return labels.map((_, r) => {
    const mean = new Float64Array(dim);
    for (let t = 0; t < templates.length; t++) {
      const row = flat.subarray((r * templates.length + t) * dim, (r * templates.length + t + 1) * dim);
      row.forEach((v, i) => { mean[i] += v; });
    }
    const norm = Math.sqrt(mean.reduce((sum, v) => sum + v * v, 0));
    return Float32Array.from(mean, (v) => v / norm);
  });
}

// ---------------------------------------------------------------------------------------------- scoring
/** softmax over labels of exp(logit_scale) * cosine (both sides are L2-normalised, so a dot product). */
export function segmentScores(audioEmbed, labelEmbeds, logitScale) {
  const scale = Math.exp(logitScale);
  const logits = labelEmbeds.map((label) => label.reduce((sum, v, i) => sum + v * audioEmbed[i], 0) * scale);
  const top = Math.max(...logits);
  const weights = logits.map((logit) => Math.exp(logit - top));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

export function parseLabels(text) {
  const labels = text.split(/[\n,]/).map((label) => label.trim()).filter((label) => label);
  if (!labels.length) throw new Error("give at least one label");
  const repeated = labels.find((label, i) => labels.indexOf(label) !== i);
  if (repeated) throw new Error(`the label "${repeated}" is given twice`);
  return labels;
}

/** Scores of a whole recording: the mean of its segments' scores, with the per-segment timeline. */
export async function analyse(model, arrayBuffer, labels, { method = "auto", onProgress = () => {} } = {}) {
  const samples = await decodeMono(arrayBuffer, model.info.sampling_rate, method);
  const segments = cutSegments(samples, model.info);
  const labelEmbeds = await embedLabels(model, labels);
  const timeline = [];
  for (const [i, segment] of segments.entries()) {
    onProgress(`segment ${i + 1} of ${segments.length}`);
    const scores = segmentScores(await embedSegment(model, segment), labelEmbeds, model.info.calibration.logit_scale);
    timeline.push({ start: segment.start, end: segment.end, scores });
  }
  const mean = labels.map((_, l) => timeline.reduce((sum, s) => sum + s.scores[l], 0) / timeline.length);
  const ranked = labels.map((label, l) => ({ label, score: mean[l] })).sort((a, b) => b.score - a.score);
  return { labels, scores: mean, ranked, segments: timeline, samples: samples.length, method };
}

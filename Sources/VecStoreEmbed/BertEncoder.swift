import CBLAS
import CEmbed
import Dispatch
import Foundation
import VecStoreIO
import VecStoreKernels

/// The shape of a BERT encoder, read from a model's `config.json`.
public struct BertConfig: Sendable, Equatable {
    /// Width of every hidden state.
    public var hidden: Int
    /// Encoder layers.
    public var layers: Int
    /// Attention heads per layer (`hidden` must be a multiple).
    public var heads: Int
    /// Width of the feed-forward layer.
    public var intermediate: Int
    /// Vocabulary size (rows of the word embedding).
    public var vocabulary: Int
    /// Rows of the position embedding: the longest input the model can take.
    public var maxPositions: Int
    /// LayerNorm epsilon.
    public var layerNormEpsilon: Float

    /// Reads and checks `config.json` (a BERT with absolute positions and the erf GELU).
    public init(file path: String) throws(EmbedError) {
        func bad(_ reason: String) -> EmbedError { .badModel(path: path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("cannot read the model configuration") }
        let value: JSONValue
        do throws(JSONParseError) { value = try JSONValue.parse([UInt8](data)) } catch { throw bad("not valid JSON: \(error)") }
        guard case .object(let o) = value else { throw bad("not a JSON object") }
        func int(_ key: String) throws(EmbedError) -> Int {
            guard case .number(let x)? = o[key], x >= 1, x <= 1_000_000, x == x.rounded() else {
                throw bad("'\(key)' is missing or not a positive integer")
            }
            return Int(x)
        }
        if case .string(let type)? = o["model_type"], type != "bert" { throw bad("model_type is '\(type)', not 'bert'") }
        if case .string(let act)? = o["hidden_act"], act != "gelu" { throw bad("hidden_act is '\(act)'; only 'gelu' (erf) is supported") }
        if case .string(let pos)? = o["position_embedding_type"], pos != "absolute" {
            throw bad("position_embedding_type is '\(pos)'; only 'absolute' is supported")
        }
        hidden = try int("hidden_size")
        layers = try int("num_hidden_layers")
        heads = try int("num_attention_heads")
        intermediate = try int("intermediate_size")
        vocabulary = try int("vocab_size")
        maxPositions = try int("max_position_embeddings")
        if case .number(let eps)? = o["layer_norm_eps"], eps > 0, eps < 1 { layerNormEpsilon = Float(eps) } else { layerNormEpsilon = 1e-12 }
        guard hidden % heads == 0 else { throw bad("hidden_size \(hidden) is not a multiple of num_attention_heads \(heads)") }
    }
}

/// The weights of a BERT encoder, loaded from safetensors and checked against the configuration.
///
/// The word embedding (the largest tensor: 47 of MiniLM's 90 MB, of which a batch reads a few rows) is
/// used in place in the file's read-only map when it is aligned there, not copied at every load; `file`
/// keeps the map alive. The other tensors are copied (the Q, K and V projections are stacked).
struct BertWeights: @unchecked Sendable {
    struct Layer: Sendable {
        /// Query, key and value projections stacked: (3·hidden) × hidden, and their biases.
        var qkv: [Float], qkvBias: [Float]
        var attentionOut: [Float], attentionOutBias: [Float]
        var norm1Gamma: [Float], norm1Beta: [Float]
        var up: [Float], upBias: [Float]
        var down: [Float], downBias: [Float]
        var norm2Gamma: [Float], norm2Beta: [Float]
    }
    /// The safetensors file whose map `mappedWord` points into.
    let file: SafetensorsFile
    /// The word embedding in the map, or nil when it is unaligned there and `copiedWord` holds it.
    let mappedWord: UnsafeBufferPointer<Float>?
    let copiedWord: [Float]
    var position: [Float], tokenType: [Float]
    var normGamma: [Float], normBeta: [Float]
    var layers: [Layer]

    init(file: SafetensorsFile, config c: BertConfig) throws(EmbedError) {
        let h = c.hidden
        // Some exports prefix every name with "bert." — accept both.
        let prefix = file.tensors["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        func check(_ name: String, _ values: UnsafeBufferPointer<Float>) throws(EmbedError) {
            let bad = ve_count_nonfinite(values.baseAddress, values.count)
            if bad > 0 { throw .badModel(path: file.path, reason: "tensor '\(prefix + name)' holds \(bad) NaN or infinite values (damaged file?)") }
        }
        func t(_ name: String, _ shape: [Int]) throws(EmbedError) -> [Float] {
            let values = try file.floats(prefix + name, shape: shape)
            try values.withUnsafeBufferPointer { (v) throws(EmbedError) in try check(name, v) }
            return values
        }
        self.file = file
        let wordName = "embeddings.word_embeddings.weight"
        if let mapped = try file.mappedFloats(prefix + wordName, shape: [c.vocabulary, h]) {
            try check(wordName, mapped)
            mappedWord = mapped
            copiedWord = []
        } else {
            mappedWord = nil
            copiedWord = try t(wordName, [c.vocabulary, h])
        }
        position = try t("embeddings.position_embeddings.weight", [c.maxPositions, h])
        // Every token has type 0: only the first row is kept, so the table must have one.
        let typeRows = max(1, file.tensors[prefix + "embeddings.token_type_embeddings.weight"]?.shape.first ?? 2)
        tokenType = Array(try t("embeddings.token_type_embeddings.weight", [typeRows, h]).prefix(h))
        normGamma = try t("embeddings.LayerNorm.weight", [h])
        normBeta = try t("embeddings.LayerNorm.bias", [h])
        layers = []
        for i in 0..<c.layers {
            let p = "encoder.layer.\(i)."
            let qkv = try t(p + "attention.self.query.weight", [h, h]) + t(p + "attention.self.key.weight", [h, h])
                + t(p + "attention.self.value.weight", [h, h])
            let qkvBias = try t(p + "attention.self.query.bias", [h]) + t(p + "attention.self.key.bias", [h])
                + t(p + "attention.self.value.bias", [h])
            layers.append(Layer(
                qkv: qkv, qkvBias: qkvBias,
                attentionOut: try t(p + "attention.output.dense.weight", [h, h]),
                attentionOutBias: try t(p + "attention.output.dense.bias", [h]),
                norm1Gamma: try t(p + "attention.output.LayerNorm.weight", [h]),
                norm1Beta: try t(p + "attention.output.LayerNorm.bias", [h]),
                up: try t(p + "intermediate.dense.weight", [c.intermediate, h]),
                upBias: try t(p + "intermediate.dense.bias", [c.intermediate]),
                down: try t(p + "output.dense.weight", [h, c.intermediate]),
                downBias: try t(p + "output.dense.bias", [h]),
                norm2Gamma: try t(p + "output.LayerNorm.weight", [h]),
                norm2Beta: try t(p + "output.LayerNorm.bias", [h])))
        }
        if file.tensors[prefix + "encoder.layer.\(c.layers).attention.self.query.weight"] != nil {
            throw .badModel(path: file.path, reason: "the file has more layers than config.json's \(c.layers)")
        }
    }

    /// Calls `body` with the word embedding (vocabulary × hidden floats).
    func withWordEmbedding<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        if let mappedWord { return body(mappedWord.baseAddress) }
        return copiedWord.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}

/// A raw pointer handed to parallel workers that write disjoint parts of the memory behind it.
struct SharedPointer<T>: @unchecked Sendable {
    let p: T
    init(_ p: T) { self.p = p }
}

/// Runs `body(i)` for i in 0..<n, on `n` threads when n > 1 (`body` must only touch disjoint memory or
/// synchronise itself).
@inline(__always)
func parallel(_ n: Int, _ body: @Sendable (Int) -> Void) {
    if n <= 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: n, execute: body) }
}

/// The BERT encoder with mean pooling and L2 normalisation: token ids in, one unit vector per text out.
///
/// Texts of a batch are packed end to end without padding: every layer except attention works token
/// by token, so one matrix product covers the whole batch, and attention runs per text and head on
/// its own length. The linear layers are `MatrixProduct.dotTile` (`sgemm`, or `vs_dot_tile` where OpenBLAS
/// runs a slow generic kernel, or runs no AVX-512 kernel on an AVX-512 CPU for products of ≥ 48 tokens:
/// `linearKernel`), attention is `sgemm`; the element-wise steps are the C kernels of `CEmbed`.
final class BertEncoder: Sendable {
    let config: BertConfig
    let weights: BertWeights

    init(config: BertConfig, weights: BertWeights) {
        self.config = config
        self.weights = weights
        BLAS.useSingleThread()
    }

    /// Scratch memory for one batch of `tokens` tokens whose longest text has `longest` tokens.
    /// Workers write disjoint rows (or their own score tile) of it.
    final class Workspace: @unchecked Sendable {
        let hidden, qkv, context, scratch, up: UnsafeMutablePointer<Float>
        let scores: UnsafeMutablePointer<Float>
        let scoreStride: Int
        let threads: Int
        init(tokens: Int, longest: Int, config c: BertConfig, threads: Int) {
            hidden = .allocate(capacity: tokens * c.hidden)
            qkv = .allocate(capacity: tokens * c.hidden * 3)
            context = .allocate(capacity: tokens * c.hidden)
            scratch = .allocate(capacity: tokens * c.hidden)
            up = .allocate(capacity: tokens * c.intermediate)
            scoreStride = longest * longest
            self.threads = threads
            scores = .allocate(capacity: scoreStride * threads)
        }
        deinit {
            for p in [hidden, qkv, context, scratch, up, scores] { p.deallocate() }
        }
    }

    /// Embeds the texts given as token id lists (each with [CLS] … [SEP], at most `maxPositions` long),
    /// writing `hidden` floats per text to `out`. `threads` workers split every step.
    func encode(_ texts: [[Int32]], threads: Int, into out: UnsafeMutablePointer<Float>) {
        let c = config
        let h = c.hidden
        var ids: [Int32] = [], positions: [Int32] = [], offsets: [Int] = [0]
        for t in texts {
            ids.append(contentsOf: t)
            positions.append(contentsOf: (0..<Int32(t.count)).map { $0 })
            offsets.append(ids.count)
        }
        let tokens = ids.count
        let longest = texts.map(\.count).max() ?? 1
        let ws = Workspace(tokens: tokens, longest: longest, config: c, threads: threads)
        let w = weights
        ids.withUnsafeBufferPointer { idp in
            positions.withUnsafeBufferPointer { pp in
                w.withWordEmbedding { word in
                    w.position.withUnsafeBufferPointer { pos in
                        w.tokenType.withUnsafeBufferPointer { type0 in
                            ve_embed_tokens(idp.baseAddress, pp.baseAddress, tokens, word, pos.baseAddress,
                                            type0.baseAddress, h, ws.hidden)
                        }
                    }
                }
            }
        }
        layerNorm(ws.hidden, rows: tokens, bias: nil, residual: nil, gamma: w.normGamma, beta: w.normBeta, threads: threads)
        for layer in w.layers {
            // Self-attention: Q, K, V for all tokens in one product; scores per text and head.
            linear(ws.hidden, rows: tokens, inputs: h, weight: layer.qkv, outputs: 3 * h, into: ws.qkv, threads: threads)
            layer.qkvBias.withUnsafeBufferPointer { b in
                let bias = SharedPointer(b.baseAddress)
                rowsParallel(tokens, threads) { r0, r1 in ve_add_bias(ws.qkv + r0 * 3 * h, r1 - r0, 3 * h, 3 * h, bias.p) }
            }
            attention(ws, offsets: offsets)
            linear(ws.context, rows: tokens, inputs: h, weight: layer.attentionOut, outputs: h, into: ws.scratch, threads: threads)
            layerNorm(ws.scratch, rows: tokens, bias: layer.attentionOutBias, residual: ws.hidden, gamma: layer.norm1Gamma,
                      beta: layer.norm1Beta, threads: threads)
            // Feed-forward: up-projection with GELU, down-projection, residual and LayerNorm.
            linear(ws.scratch, rows: tokens, inputs: h, weight: layer.up, outputs: c.intermediate, into: ws.up, threads: threads)
            layer.upBias.withUnsafeBufferPointer { b in
                let width = c.intermediate
                let bias = SharedPointer(b.baseAddress)
                rowsParallel(tokens, threads) { r0, r1 in ve_bias_gelu(ws.up + r0 * width, r1 - r0, width, width, bias.p) }
            }
            linear(ws.up, rows: tokens, inputs: c.intermediate, weight: layer.down, outputs: h, into: ws.hidden, threads: threads)
            layerNorm(ws.hidden, rows: tokens, bias: layer.downBias, residual: ws.scratch, gamma: layer.norm2Gamma,
                      beta: layer.norm2Beta, threads: threads)
        }
        for (i, start) in offsets.dropLast().enumerated() {
            ve_mean_pool_normalize(ws.hidden + start * h, offsets[i + 1] - start, h, out + i * h)
        }
    }

    /// Splits `rows` into `threads` contiguous ranges.
    private func rowsParallel(_ rows: Int, _ threads: Int, _ body: @Sendable (Int, Int) -> Void) {
        let n = max(1, min(threads, rows / 16))
        parallel(n) { i in body(rows * i / n, rows * (i + 1) / n) }
    }

    private func layerNorm(_ x: UnsafeMutablePointer<Float>, rows: Int, bias: [Float]?, residual: UnsafeMutablePointer<Float>?,
                           gamma: [Float], beta: [Float], threads: Int) {
        let h = config.hidden, eps = config.layerNormEpsilon
        let xs = SharedPointer(x), rs = SharedPointer(residual)
        gamma.withUnsafeBufferPointer { g in
            beta.withUnsafeBufferPointer { b in
                (bias ?? []).withUnsafeBufferPointer { bi in
                    let gp = SharedPointer(g.baseAddress), bp = SharedPointer(b.baseAddress)
                    let bip = SharedPointer(bias == nil ? nil : bi.baseAddress)
                    rowsParallel(rows, threads) { r0, r1 in
                        ve_residual_layernorm(xs.p + r0 * h, r1 - r0, h, bip.p, rs.p.map { $0 + r0 * h }, gp.p, bp.p, eps)
                    }
                }
            }
        }
    }

    /// The product kernel of a linear layer over `rows` tokens: `MatrixProduct.computeKernel` (the kernel for
    /// arithmetic-bound products) from `computeKernelRows` tokens on, `BatchKernel.current` below. Measured on
    /// a Zen 5 EPYC, where OpenBLAS runs only its AVX2 kernels (one thread, `vecstore-bench embed`): batches of
    /// docs60k paragraphs (67 tokens a text) 1.2× faster one text a call and 1.75× in batches of 32 with
    /// `vs_dot_tile`, while single 22-token SciFact queries were 8.2 ms with `sgemm` against 10.2 ms. The
    /// kernel follows the packed batch's token count, so on such a CPU a text's vector may differ in its last
    /// bits between a batch and a call of its own (well inside Spec/EMBEDDER.md's cosine ≥ 0.9999).
    static func linearKernel(rows: Int) -> BatchKernel {
        rows >= computeKernelRows ? MatrixProduct.computeKernel : BatchKernel.current
    }

    /// Tokens from which a linear layer uses `MatrixProduct.computeKernel` (see `linearKernel`).
    static let computeKernelRows = 48

    /// y[rows × outputs] = x[rows × inputs] · weightᵀ, weight stored [outputs × inputs] (PyTorch layout).
    /// Split by output columns across threads.
    private func linear(_ x: UnsafeMutablePointer<Float>, rows: Int, inputs: Int, weight: [Float], outputs: Int,
                        into y: UnsafeMutablePointer<Float>, threads: Int) {
        weight.withUnsafeBufferPointer { wb in
            guard let w = wb.baseAddress else { return }
            let ws = SharedPointer(w), xs = SharedPointer(x), ys = SharedPointer(y)
            let n = max(1, min(threads, outputs / 64))
            let kernel = Self.linearKernel(rows: rows)
            parallel(n) { i in
                // Column ranges in multiples of 16 so each worker's stores stay on its own cache lines.
                let c0 = (outputs * i / n) & ~15, c1 = i == n - 1 ? outputs : (outputs * (i + 1) / n) & ~15
                guard c1 > c0 else { return }
                MatrixProduct.dotTile(xs.p, aRows: rows, ws.p + c0 * inputs, bRows: c1 - c0, dimension: inputs,
                                      into: ys.p + c0, ldo: outputs, kernel: kernel)
            }
        }
    }

    /// Multi-head self-attention of every text over its own tokens: context = softmax(QKᵀ/√d)·V.
    private func attention(_ ws: Workspace, offsets: [Int]) {
        let h = config.hidden, heads = config.heads, d = h / heads
        let scale = 1 / Float(d).squareRoot()
        let texts = offsets.count - 1
        let jobs = texts * heads
        let n = max(1, min(ws.threads, jobs))
        let qkv = SharedPointer(ws.qkv), context = SharedPointer(ws.context), scores = SharedPointer(ws.scores)
        let stride = ws.scoreStride
        offsets.withUnsafeBufferPointer { ob in
            guard let base = ob.baseAddress else { return }
            let off = SharedPointer(base)
            parallel(n) { worker in
                let s = scores.p + worker * stride
                for job in (jobs * worker / n)..<(jobs * (worker + 1) / n) {
                    let text = job / heads, head = job % heads
                    let start = off.p[text], length = off.p[text + 1] - start
                    let q = qkv.p + start * 3 * h + head * d
                    let k = q + h, v = q + 2 * h
                    let l = Int32(length), ld = Int32(3 * h)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l, l, Int32(d), 1, q, ld, k, ld, 0, s, l)
                    ve_softmax_rows(s, length, length, length, scale)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l, Int32(d), l, 1, s, l, v, ld, 0,
                                context.p + start * h + head * d, Int32(h))
                }
            }
        }
    }
}

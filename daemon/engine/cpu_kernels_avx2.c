/* The native decoder's kernels for CPUs with AVX2 and FMA but no AVX-512 VNNI (AMD Zen 2 and 3,
 * Intel before Ice Lake): the same functions and contracts as `cpu_kernels.c`, bf16 aside.
 *
 * Why: without them `native-w8a8` ran through torch, whose `_int_mm` has no fast path on such
 * CPUs (~35x slower than a float32 product on a 2-core EPYC), and torch's float32 products of
 * 2-16 rows cost ~3.5x one row there, so a draft tree could never pay for itself.
 *
 * W8A8 product, the arithmetic of `linears.Int8Linear` to the bit:
 *   row_scale = max(max|x|, 1e-8) / 127;  q = rint(x / row_scale)      (int16 here, |q| <= 127)
 *   out = ((float)(q . w) * row_scale) * weight_scale  (+ bias)         (no fused multiply-add)
 * `vpmaddwd` multiplies pairs of int16 and adds each pair into an int32 lane: the weights are
 * widened from int8 on load (once for all the rows of a group), the activations are kept as
 * int16 pairs and broadcast. Every partial sum is an exact integer (|sum| < 127 * 127 * k), so
 * a row's result does not depend on the other rows or on the order of the sums.
 *
 * Packed weights: output channels padded to a multiple of 64 (as `cpu_kernels.c`, so the
 * Python side pads alike), laid out [block of 16 outputs][k / 2][16][2]: one block's weights
 * are one contiguous stream of 32 bytes per pair of inputs.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 16 /* output channels per kernel call: two vectors of 8 int32 lanes */
#define TILE 64  /* output channels a thread takes at once: four blocks */
#define GROUP 6  /* rows per kernel call: 12 accumulators, 2 weights and 1 input in 16 ymm */

static void quantize_rows(const float *x, int64_t rows, int64_t k, int16_t *q, float *scales) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * k;
        float peak = 0.0f;
        for (int64_t i = 0; i < k; i++) {
            float a = fabsf(row[i]);
            peak = a > peak ? a : peak;
        }
        float scale = (peak > 1e-8f ? peak : 1e-8f) / 127.0f;
        scales[r] = scale;
        for (int64_t i = 0; i < k; i++) q[r * k + i] = (int16_t)rintf(row[i] / scale);
    }
}

struct epilogue {
    const float *row_scales;
    const float *weight_scales;
    const float *bias; /* may be NULL */
};

/* (float)acc * row_scale * weight_scale (+ bias), in that order */
static inline void finish(__m256i acc, float row_scale, const float *weight_scales,
                          const float *bias, float *out) {
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(row_scale));
    v = _mm256_mul_ps(v, _mm256_loadu_ps(weight_scales));
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
    _mm256_storeu_ps(out, v);
}

/* Block kernels: one block (16 outputs) for ROWS consecutive rows. The accumulators are named
 * variables, not an array, so that the compiler keeps them all in registers. */
#define ACC_DECLARE(r) __m256i a##r##0, a##r##1;
#define ACC_ZERO(r)                                                                          \
    if (n_rows > r) a##r##0 = a##r##1 = _mm256_setzero_si256();
#define ACC_STEP(r)                                                                          \
    if (n_rows > r) {                                                                        \
        __m256i x = _mm256_set1_epi32(*(const int32_t *)(q + r * k + i));                    \
        a##r##0 = _mm256_add_epi32(a##r##0, _mm256_madd_epi16(w0, x));                        \
        a##r##1 = _mm256_add_epi32(a##r##1, _mm256_madd_epi16(w1, x));                        \
    }
#define ACC_FINISH(r)                                                                        \
    if (n_rows > r) {                                                                        \
        finish(a##r##0, e->row_scales[r], e->weight_scales, e->bias, out + r * stride);     \
        finish(a##r##1, e->row_scales[r], e->weight_scales + 8, e->bias ? e->bias + 8 : 0,  \
               out + r * stride + 8);                                                       \
    }
#define ALL_ROWS(step) step(0) step(1) step(2) step(3) step(4) step(5)

#define DEFINE_BLOCK_KERNEL(ROWS)                                                             \
    static void block_##ROWS(const int16_t *q, int64_t k, const int8_t *w,                  \
                             const struct epilogue *e, float *out, int64_t stride) {        \
        enum { n_rows = ROWS };                                                             \
        ALL_ROWS(ACC_DECLARE)                                                               \
        ALL_ROWS(ACC_ZERO)                                                                  \
        for (int64_t i = 0; i < k; i += 2) {                                                \
            const int8_t *wi = w + i * BLOCK;                                               \
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wi));        \
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wi + 16))); \
            ALL_ROWS(ACC_STEP)                                                              \
        }                                                                                   \
        ALL_ROWS(ACC_FINISH)                                                                \
    }

typedef void (*block_kernel)(const int16_t *, int64_t, const int8_t *, const struct epilogue *,
                             float *, int64_t);

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

DEFINE_BLOCK_KERNEL(1)
DEFINE_BLOCK_KERNEL(2)
DEFINE_BLOCK_KERNEL(3)
DEFINE_BLOCK_KERNEL(4)
DEFINE_BLOCK_KERNEL(5)
DEFINE_BLOCK_KERNEL(6)
static const block_kernel kernels[GROUP + 1] = {0,       block_1, block_2, block_3,
                                                block_4, block_5, block_6};

/* x (rows, k) float32; packed weights for n_padded outputs; weight_scales and bias (may be
 * NULL) padded to n_padded; out (rows, n_padded) float32; q (rows * k int16: 2 * rows * k
 * bytes) and row_scales (rows) are scratch; `offsets` is unused (the VNNI kernel's scratch).
 * k is even. Each thread takes whole tiles; a block's weights (16 x k bytes) stay in its
 * core's cache while the groups of six rows pass over them. */
void w8a8_linear(const float *x, int64_t rows, int64_t k, const int8_t *packed,
                 const float *weight_scales, const float *bias, int64_t n_padded, float *out,
                 int16_t *q, float *row_scales, int32_t *offsets) {
    (void)offsets;
    quantize_rows(x, rows, k, q, row_scales);
    int64_t tiles = n_padded / TILE;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        for (int64_t column = t * TILE; column < (t + 1) * TILE; column += BLOCK) {
            const int8_t *w = packed + column * k;
            for (int64_t r0 = 0; r0 < rows; r0 += GROUP) {
                int64_t n_rows = rows - r0 < GROUP ? rows - r0 : GROUP;
                struct epilogue e = {row_scales + r0, weight_scales + column,
                                     bias ? bias + column : 0};
                kernels[n_rows](q + r0 * k, k, w, &e, out + r0 * n_padded + column, n_padded);
            }
        }
    }
}

/* ---- Row-wise float32 operations of the native decoder ------------------------------------
 *
 * Each row is computed on its own, by the same code in the same order whatever rows share the
 * call, so a draft tree's row is bit for bit the one-token step's row at that position. */

/* exp for 8 lanes, x <= 0: 2^n * p(r), x = n ln2 + r, |r| <= ln2 / 2; a few ulp */
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n built in the exponent field: -126 <= n <= 0 here, a normal number */
    __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* the sum of the 8 lanes, in a fixed order */
static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* q . k over 64 floats: 8 lanes of partial sums, then their sum */
static inline __m256 dot64_lanes(const float *a, const float *b) {
    __m256 s = _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b));
    for (int d = 8; d < 64; d += 8)
        s = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s);
    return s;
}

/* The 8 horizontal sums of p[0..7], as one vector (lane t = sum of p[t]) */
static inline __m256 sums8(const __m256 *p) {
    __m256 t0 = _mm256_hadd_ps(p[0], p[1]), t1 = _mm256_hadd_ps(p[2], p[3]);
    __m256 t2 = _mm256_hadd_ps(p[4], p[5]), t3 = _mm256_hadd_ps(p[6], p[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* lanes below `count` (0..8) set */
static inline __m256i first_lanes(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define KEYS_AT_ONCE 8
#define ROWS_AT_ONCE 8
#define MOST_GROUP 16 /* query heads per key/value head (the caller checks) */

static inline int64_t slot_of(int64_t j, int64_t shared, const int64_t *more) {
    return j < shared ? j : more[j - shared];
}

/* Attention, as `attention` in cpu_kernels.c: query (rows, heads, 64), one layer's keys
 * (kv_heads, capacity, 64) and values (kv_heads, capacity, value_stride); row i reads the key
 * slots [0, prefix[i]) and then extra[i * extra_width + e] for e < extra_count[i]. A task is
 * one key/value head and up to 8 rows; each query vector's work is a fixed sequence over its
 * own keys in order, the same whichever rows share the task. */
void attention(const float *query, int64_t rows, int64_t heads, int64_t kv_heads,
               const float *keys, const float *values, int64_t capacity, int64_t value_stride,
               const int64_t *prefix, const int64_t *extra, const int64_t *extra_count,
               int64_t extra_width, float scale, float *out, int64_t most_keys) {
    const int64_t dim = 64, group = heads / kv_heads;
    const int64_t row_groups = (rows + ROWS_AT_ONCE - 1) / ROWS_AT_ONCE;
    const int64_t width = most_keys + KEYS_AT_ONCE;
#pragma omp parallel
    {
    float *scores = malloc(sizeof(float) * (size_t)(ROWS_AT_ONCE * group * width));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < kv_heads * row_groups; task++) {
        int64_t kv = task % kv_heads, r0 = (task / kv_heads) * ROWS_AT_ONCE;
        int64_t r1 = r0 + ROWS_AT_ONCE < rows ? r0 + ROWS_AT_ONCE : rows;
        const float *k = keys + kv * capacity * dim;
        const float *v = values + kv * capacity * value_stride;
        int64_t longest = 0;
        for (int64_t r = r0; r < r1; r++) {
            int64_t n = prefix[r] + extra_count[r];
            longest = n > longest ? n : longest;
        }
        /* scores, scaled: keys 8 at a time, so a block of keys is read once for all queries */
        for (int64_t j = 0; j < longest; j += KEYS_AT_ONCE) {
            for (int64_t r = r0; r < r1; r++) {
                int64_t shared = prefix[r], n = shared + extra_count[r];
                const int64_t *more = extra + r * extra_width;
                if (j >= n) continue;
                for (int64_t g = 0; g < group; g++) {
                    const float *q = query + (r * heads + kv * group + g) * dim;
                    float *s = scores + ((r - r0) * group + g) * width;
                    if (j + KEYS_AT_ONCE <= n) {
                        __m256 p[KEYS_AT_ONCE];
                        for (int t = 0; t < KEYS_AT_ONCE; t++)
                            p[t] = dot64_lanes(q, k + slot_of(j + t, shared, more) * dim);
                        _mm256_storeu_ps(s + j, _mm256_mul_ps(sums8(p), _mm256_set1_ps(scale)));
                    } else {
                        for (int64_t i = j; i < n; i++)
                            s[i] = sum8(dot64_lanes(q, k + slot_of(i, shared, more) * dim)) * scale;
                    }
                }
            }
        }
        /* weights: exp(score - the row's maximum), and their total */
        float totals[ROWS_AT_ONCE * MOST_GROUP];
        for (int64_t r = r0; r < r1; r++) {
            int64_t n = prefix[r] + extra_count[r];
            for (int64_t g = 0; g < group; g++) {
                float *s = scores + ((r - r0) * group + g) * width;
                float top = -INFINITY;
                for (int64_t i = 0; i < n; i++) top = s[i] > top ? s[i] : top;
                __m256 total = _mm256_setzero_ps(), shift = _mm256_set1_ps(top);
                int64_t i = 0;
                for (; i + 8 <= n; i += 8) {
                    __m256 w = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), shift));
                    _mm256_storeu_ps(s + i, w);
                    total = _mm256_add_ps(total, w);
                }
                if (i < n) {
                    __m256i tail = first_lanes(n - i);
                    __m256 w = exp8(_mm256_sub_ps(_mm256_maskload_ps(s + i, tail), shift));
                    w = _mm256_and_ps(w, _mm256_castsi256_ps(tail));
                    _mm256_maskstore_ps(s + i, tail, w);
                    total = _mm256_add_ps(total, w);
                }
                totals[(r - r0) * group + g] = sum8(total);
            }
        }
        /* weighted values, keys in order, accumulated in `out` */
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++)
                for (int64_t d = 0; d < dim; d++) out[(r * heads + kv * group + g) * dim + d] = 0;
        for (int64_t j = 0; j < longest; j += KEYS_AT_ONCE) {
            for (int64_t r = r0; r < r1; r++) {
                int64_t shared = prefix[r], n = shared + extra_count[r];
                const int64_t *more = extra + r * extra_width;
                int64_t end = j + KEYS_AT_ONCE < n ? j + KEYS_AT_ONCE : n;
                for (int64_t g = 0; g < group; g++) {
                    const float *s = scores + ((r - r0) * group + g) * width;
                    float *o = out + (r * heads + kv * group + g) * dim;
                    __m256 a[8];
                    for (int d = 0; d < 8; d++) a[d] = _mm256_loadu_ps(o + 8 * d);
                    for (int64_t i = j; i < end; i++) {
                        const float *vi = v + slot_of(i, shared, more) * value_stride;
                        __m256 w = _mm256_set1_ps(s[i]);
                        for (int d = 0; d < 8; d++)
                            a[d] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vi + 8 * d), a[d]);
                    }
                    for (int d = 0; d < 8; d++) _mm256_storeu_ps(o + 8 * d, a[d]);
                }
            }
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++) {
                float *o = out + (r * heads + kv * group + g) * dim;
                __m256 inverse = _mm256_set1_ps(1.0f / totals[(r - r0) * group + g]);
                for (int64_t d = 0; d < dim; d += 8)
                    _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), inverse));
            }
    }
    free(scores);
    }
}

/* out = x * (1 / sqrt(mean(x^2) + eps)) * weight, row by row; width a multiple of 8 */
void rms_norm(const float *x, int64_t rows, int64_t width, const float *weight, float eps,
              float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * width;
        __m256 squares = _mm256_setzero_ps();
        for (int64_t i = 0; i < width; i += 8) {
            __m256 a = _mm256_loadu_ps(row + i);
            squares = _mm256_fmadd_ps(a, a, squares);
        }
        float mean = sum8(squares) / (float)width;
        __m256 scale = _mm256_set1_ps(1.0f / sqrtf(mean + eps));
        for (int64_t i = 0; i < width; i += 8) {
            __m256 a = _mm256_mul_ps(_mm256_loadu_ps(row + i), scale);
            _mm256_storeu_ps(out + r * width + i, _mm256_mul_ps(a, _mm256_loadu_ps(weight + i)));
        }
    }
}

/* out = silu(gate) * up for rows of [gate | up], width a multiple of 8. The exponential is
 * taken of -|gate| (exp8's range): sigmoid = 1 / (1 + e) above zero, e / (1 + e) below. */
void silu_mul(const float *gate_up, int64_t rows, int64_t width, float *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
#pragma omp parallel for schedule(static) if (rows >= 8)
    for (int64_t r = 0; r < rows; r++) {
        const float *gate = gate_up + r * 2 * width, *up = gate + width;
        for (int64_t i = 0; i < width; i += 8) {
            __m256 g = _mm256_loadu_ps(gate + i);
            __m256 e = exp8(_mm256_or_ps(g, sign)); /* -|g| */
            __m256 denominator = _mm256_add_ps(one, e);
            __m256 positive = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ);
            __m256 numerator = _mm256_blendv_ps(e, one, positive);
            __m256 silu = _mm256_mul_ps(g, _mm256_div_ps(numerator, denominator));
            _mm256_storeu_ps(out + r * width + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
        }
    }
}

/* RoPE in the half-split layout, dim a multiple of 16: x[r, h] (strides x_row, x_head) into
 * out[r, h] (strides out_row, out_head), with cos and sin (rows, dim / 2). Each product is
 * rounded on its own, as torch's `first * cos - second * sin` is, so the bits are torch's. */
void rope(const float *x, int64_t rows, int64_t heads, int64_t dim, int64_t x_row,
          int64_t x_head, const float *cos, const float *sin, float *out, int64_t out_row,
          int64_t out_head) {
    int64_t half = dim / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t h = 0; h < heads; h++) {
            const float *in = x + r * x_row + h * x_head;
            float *to = out + r * out_row + h * out_head;
            for (int64_t i = 0; i < half; i += 8) {
                __m256 c = _mm256_loadu_ps(cos + r * half + i);
                __m256 s = _mm256_loadu_ps(sin + r * half + i);
                __m256 first = _mm256_loadu_ps(in + i), second = _mm256_loadu_ps(in + half + i);
                _mm256_storeu_ps(to + i, _mm256_sub_ps(_mm256_mul_ps(first, c),
                                                       _mm256_mul_ps(second, s)));
                _mm256_storeu_ps(to + half + i, _mm256_add_ps(_mm256_mul_ps(second, c),
                                                              _mm256_mul_ps(first, s)));
            }
        }
}

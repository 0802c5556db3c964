/* W8A8 linear for a few rows on AVX-512 VNNI: out = dequant(quant(x) . W^T) (+ bias).
 *
 * Why a kernel of our own: torch's `_int_mm` streams int8 weights at memory speed for one row,
 * but from two rows on it ran 3x slower on a 2-core AMD EPYC (no AMX), and a draft tree is
 * verified as 2-32 rows. Here each 64-byte load of weights (16 output channels x 4 inputs)
 * feeds `vpdpbusd` for every row of a group of up to six, so the weights stream once per group.
 *
 * The arithmetic is the one `linears.Int8Linear` does with torch ops, to the bit:
 *   row_scale = max(max|x|, 1e-8) / 127;  q = rint(x / row_scale)       (int8, ties to even)
 *   out = ((float)(q . w) * row_scale) * weight_scale  (+ bias)          (no fused multiply-add)
 * Integer products are exact, so a row's result does not depend on the other rows.
 * `vpdpbusd` multiplies unsigned by signed bytes: the weights are stored as w + 128 and 128
 * times each activation row's sum is taken off again.
 *
 * Packed weights: output channels padded to a multiple of 64 (a tile of 4 x 16 lanes), laid
 * out [tile][k / 4][lane block][16][4], so one tile's weights are one contiguous stream.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define LANES 16
#define BLOCKS 4
#define TILE (LANES * BLOCKS)
#define GROUP 6

/* Sixteen lanes at a time: the same division and ties-to-even rounding as the scalar form, so
 * the same bytes; a 16-row tree's rows were a tenth of its linear time quantized one by one. */
static void quantize_rows(const float *x, int64_t rows, int64_t k, int8_t *q, float *scales,
                          int32_t *offsets) {
    /* rows apart on the threads from a prompt chunk's size on (each row alone, same bytes) */
#pragma omp parallel for schedule(static) if (rows * k >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * k;
        int64_t body = k - k % 16;
        __m512 peaks = _mm512_setzero_ps();
        for (int64_t i = 0; i < body; i += 16)
            peaks = _mm512_max_ps(peaks, _mm512_abs_ps(_mm512_loadu_ps(row + i)));
        float peak = _mm512_reduce_max_ps(peaks);
        for (int64_t i = body; i < k; i++) {
            float a = fabsf(row[i]);
            peak = a > peak ? a : peak;
        }
        float scale = (peak > 1e-8f ? peak : 1e-8f) / 127.0f;
        scales[r] = scale;
        __m512 divisor = _mm512_set1_ps(scale);
        __m512i sums = _mm512_setzero_si512();
        for (int64_t i = 0; i < body; i += 16) {
            __m512 v = _mm512_div_ps(_mm512_loadu_ps(row + i), divisor);
            v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m512i n = _mm512_cvtps_epi32(v);
            _mm_storeu_si128((__m128i *)(q + r * k + i), _mm512_cvtepi32_epi8(n));
            sums = _mm512_add_epi32(sums, n);
        }
        int32_t sum = _mm512_reduce_add_epi32(sums);
        for (int64_t i = body; i < k; i++) {
            int32_t v = (int32_t)rintf(row[i] / scale);
            q[r * k + i] = (int8_t)v;
            sum += v;
        }
        offsets[r] = 128 * sum;
    }
}

/* Tile kernels: one tile (64 output channels) for ROWS consecutive rows. A family defines
 * VEC (the accumulators' type), ZERO, DOT(acc, weights, inputs), PER_LANE (inputs per 32-bit
 * lane), ELEM (bytes per input) and FINISH(acc, row, lane block). The accumulators are named
 * variables, not an array, so that the compiler keeps all 24 in registers (with an array gcc
 * stored every one to the stack on every step, 3x slower). */
#define ACC_DECLARE(r) VEC a##r##0, a##r##1, a##r##2, a##r##3;
#define ACC_ZERO(r)                                                                          \
    if (n_rows > r) {                                                                        \
        a##r##0 = a##r##1 = a##r##2 = a##r##3 = ZERO;                                        \
    }
#define ACC_STEP(r)                                                                          \
    if (n_rows > r) {                                                                        \
        __m512i x = _mm512_set1_epi32(*(const int32_t *)(q + (r * k + i) * ELEM));          \
        a##r##0 = DOT(a##r##0, w0, x);                                                       \
        a##r##1 = DOT(a##r##1, w1, x);                                                       \
        a##r##2 = DOT(a##r##2, w2, x);                                                       \
        a##r##3 = DOT(a##r##3, w3, x);                                                       \
    }
#define ACC_FINISH(r)                                                                        \
    if (n_rows > r) {                                                                        \
        FINISH(a##r##0, r, 0);                                                               \
        FINISH(a##r##1, r, 1);                                                               \
        FINISH(a##r##2, r, 2);                                                               \
        FINISH(a##r##3, r, 3);                                                               \
    }
#define ALL_ROWS(step) step(0) step(1) step(2) step(3) step(4) step(5)

/* what a tile kernel adds after the sums, already offset to its rows and columns */
struct epilogue {
    const int32_t *offsets;     /* int8: 128 x each activation row's sum */
    const float *row_scales;    /* int8 */
    const float *weight_scales; /* int8 */
    const float *bias;          /* may be NULL */
};

#define DEFINE_TILE_KERNEL(NAME, ROWS)                                                        \
    static void NAME##_##ROWS(const char *q, int64_t k, const char *w,                      \
                              const struct epilogue *e, float *out, int64_t stride) {       \
        enum { n_rows = ROWS };                                                             \
        ALL_ROWS(ACC_DECLARE)                                                               \
        ALL_ROWS(ACC_ZERO)                                                                  \
        for (int64_t i = 0; i < k; i += PER_LANE) {                                         \
            const char *wi = w + i * TILE * ELEM;                                           \
            __m512i w0 = _mm512_loadu_si512(wi);                                            \
            __m512i w1 = _mm512_loadu_si512(wi + 64);                                       \
            __m512i w2 = _mm512_loadu_si512(wi + 128);                                      \
            __m512i w3 = _mm512_loadu_si512(wi + 192);                                      \
            ALL_ROWS(ACC_STEP)                                                              \
        }                                                                                   \
        ALL_ROWS(ACC_FINISH)                                                                \
    }
#define DEFINE_FAMILY(NAME)                                                                   \
    DEFINE_TILE_KERNEL(NAME, 1)                                                              \
    DEFINE_TILE_KERNEL(NAME, 2)                                                              \
    DEFINE_TILE_KERNEL(NAME, 3)                                                              \
    DEFINE_TILE_KERNEL(NAME, 4)                                                              \
    DEFINE_TILE_KERNEL(NAME, 5)                                                              \
    DEFINE_TILE_KERNEL(NAME, 6)                                                              \
    static const tile_kernel NAME##_kernels[GROUP + 1] = {0,         NAME##_1, NAME##_2,     \
                                                          NAME##_3,  NAME##_4, NAME##_5,     \
                                                          NAME##_6};

typedef void (*tile_kernel)(const char *, int64_t, const char *, const struct epilogue *,
                            float *, int64_t);

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

/* int8 x int8: (float)(acc - offset) * row_scale * weight_scale (+ bias), in that order */
static inline void finish_int8(__m512i acc, int64_t r, int b, const struct epilogue *e,
                               float *out) {
    __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(e->offsets[r])));
    v = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(e->row_scales[r])),
                      _mm512_loadu_ps(e->weight_scales + b * LANES));
    if (e->bias) v = _mm512_add_ps(v, _mm512_loadu_ps(e->bias + b * LANES));
    _mm512_storeu_ps(out, v);
}
#define VEC __m512i
#define ZERO _mm512_setzero_si512()
#define DOT(acc, w, x) _mm512_dpbusd_epi32(acc, w, x)
#define PER_LANE 4
#define ELEM 1
#define FINISH(acc, r, b) finish_int8(acc, r, b, e, out + (r) * stride + (b) * LANES)
DEFINE_FAMILY(int8)
#undef VEC
#undef ZERO
#undef DOT
#undef PER_LANE
#undef ELEM
#undef FINISH

/* bf16 x bf16 pairs into float32 (`vdpbf16ps`), then + bias */
static inline void finish_float(__m512 acc, int b, const struct epilogue *e, float *out) {
    if (e->bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(e->bias + b * LANES));
    _mm512_storeu_ps(out, acc);
}
#define VEC __m512
#define ZERO _mm512_setzero_ps()
#define DOT(acc, w, x) _mm512_dpbf16_ps(acc, (__m512bh)(w), (__m512bh)(x))
#define PER_LANE 2
#define ELEM 2
#define FINISH(acc, r, b) finish_float(acc, b, e, out + (r) * stride + (b) * LANES)
DEFINE_FAMILY(bf16)

/* an int8 epilogue from row r0 and output `column` on */
static struct epilogue at_rows(const struct epilogue *whole, int64_t r0, int64_t column) {
    struct epilogue e = {whole->offsets + r0, whole->row_scales + r0,
                         whole->weight_scales + column, whole->bias ? whole->bias + column : 0};
    return e;
}

/* Every tile of a product, rows in groups of six: each thread takes whole tiles, and a tile's
 * weights (64 x k inputs) stay in its core's cache while the groups pass over them. */
static void run_tiles(const tile_kernel *kernels, const char *q, int64_t rows, int64_t k,
                      int64_t elem, const char *packed, struct epilogue whole, int64_t n_padded,
                      float *out) {
    int64_t tiles = n_padded / TILE;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t column = t * TILE;
        for (int64_t r0 = 0; r0 < rows; r0 += GROUP) {
            int64_t n_rows = rows - r0 < GROUP ? rows - r0 : GROUP;
            struct epilogue e = {
                whole.offsets ? whole.offsets + r0 : 0,
                whole.row_scales ? whole.row_scales + r0 : 0,
                whole.weight_scales ? whole.weight_scales + column : 0,
                whole.bias ? whole.bias + column : 0,
            };
            kernels[n_rows](q + r0 * k * elem, k, packed + t * TILE * k * elem, &e,
                            out + r0 * n_padded + column, n_padded);
        }
    }
}

/* ---- AMX (Intel Sapphire Rapids and later): up to 16 rows per pass of the weights ---------
 *
 * Why: `vpdpbusd` does 64 multiply-adds per row per weight load, so a 16-row draft tree costs
 * ~3x a one-row step in arithmetic alone; one `tdpbsud` does 16 rows x 16 outputs x 64 inputs,
 * which leaves a tree of up to 16 rows about as cheap as one row (the weights' stream from
 * memory is the same). Same integer products as the VNNI tiles (signed activations times the
 * stored w + 128, offsets taken off after), so the sums, and every output bit, are the same.
 *
 * The packed layout needs no change: for lane block b and inputs [i, i + 64), the 16 groups
 * of four inputs x 16 outputs sit 256 bytes apart, which is one B tile loaded with stride 256.
 * The A tile is the rows' int8 activations, k bytes apart. */
#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 12) || \
                           (!defined(__clang__) && __GNUC__ >= 11))
#include <sys/syscall.h>
#include <unistd.h>
#define HAVE_AMX 1
#define AMX_MIN_ROWS 2 /* one row only streams the weights: VNNI is as fast there */
#define AMX_ROWS 16     /* rows per tile */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_on;

/* Ask Linux for the tile registers' state (process-wide); 1 when the kernels will use AMX. The
 * caller checks the CPU's amx_tile and amx_int8 flags first. */
int amx_enable(int on) {
    amx_on = on && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    return amx_on;
}

struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* GCC (12) does not count `ldtilecfg` as reading its operand: inlined into a loop, the
 * configuration's stores were dropped as dead and the load faulted. The empty asm says the
 * memory is read. */
#define load_tile_config(config)                                                             \
    do {                                                                                     \
        __asm__ volatile("" : : "r"(config) : "memory");                                     \
        _tile_loadconfig(config);                                                            \
    } while (0)

/* only these functions may use AMX: the rest of the library runs on CPUs without it */
#define AMX_CODE __attribute__((target("amx-tile,amx-int8")))

/* tiles 0-3: sums of the four lane blocks (rows x 16 int32); 4: activations; 5-7: weights */
AMX_CODE static void amx_configure(int rows) {
    struct tile_config c = {0};
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = t < 5 ? (uint8_t)rows : 16;
    }
    load_tile_config(&c);
}

AMX_CODE static void amx_tile(const int8_t *q, int64_t n_rows, int64_t k, const uint8_t *w,
                              const struct epilogue *e, float *out, int64_t stride,
                              int32_t *sums) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t i = 0; i < k; i += 64) {
        const uint8_t *wi = w + i * TILE;
        _tile_loadd(4, q + i, k);
        _tile_loadd(5, wi, 256);
        _tile_loadd(6, wi + 64, 256);
        _tile_loadd(7, wi + 128, 256);
        _tile_dpbsud(0, 4, 5);
        _tile_dpbsud(1, 4, 6);
        _tile_dpbsud(2, 4, 7);
        _tile_loadd(5, wi + 192, 256);
        _tile_dpbsud(3, 4, 5);
    }
    _tile_stored(0, sums, TILE * 4);
    _tile_stored(1, sums + LANES, TILE * 4);
    _tile_stored(2, sums + 2 * LANES, TILE * 4);
    _tile_stored(3, sums + 3 * LANES, TILE * 4);
    for (int64_t r = 0; r < n_rows; r++)
        for (int b = 0; b < BLOCKS; b++)
            finish_int8(_mm512_load_si512(sums + r * TILE + b * LANES), r, b, e,
                        out + r * stride + b * LANES);
}

/* Two 16-row groups at once (32 rows x 64 outputs), half the outputs at a time: sums 0-3 are
 * (rows 0-15, 16-31) x (lane blocks 2h, 2h + 1), from activation tiles 4-5 and weight tiles 6-7.
 * Each weight tile feeds two products and each activation tile two: 1 KB of tile loads a
 * product where `amx_tile` needs 1.25, which measured 1.3x faster on prompt chunks. Same
 * integer sums, same bits. sums: room for 32 x 64. */
AMX_CODE static void amx_pair(const int8_t *q, int64_t k, const uint8_t *w,
                              const struct epilogue *e, float *out, int64_t stride,
                              int32_t *sums) {
    const int64_t lower = AMX_ROWS * TILE; /* rows 16-31 of the sums */
    for (int h = 0; h < 2; h++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t i = 0; i < k; i += 64) {
            const uint8_t *wi = w + i * TILE + h * 128;
            _tile_loadd(4, q + i, k);
            _tile_loadd(6, wi, 256);
            _tile_dpbsud(0, 4, 6);
            _tile_loadd(7, wi + 64, 256);
            _tile_dpbsud(1, 4, 7);
            _tile_loadd(5, q + AMX_ROWS * k + i, k);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
        _tile_stored(0, sums + 2 * h * LANES, TILE * 4);
        _tile_stored(1, sums + (2 * h + 1) * LANES, TILE * 4);
        _tile_stored(2, sums + lower + 2 * h * LANES, TILE * 4);
        _tile_stored(3, sums + lower + (2 * h + 1) * LANES, TILE * 4);
    }
    for (int64_t r = 0; r < 2 * AMX_ROWS; r++)
        for (int b = 0; b < BLOCKS; b++)
            finish_int8(_mm512_load_si512(sums + r * TILE + b * LANES), r, b, e,
                        out + r * stride + b * LANES);
}

/* Every row of one tile of 64 outputs (out: its first column): the first 16 rows read all of
 * the tile's weights in memory order (half the weights a pass, as `amx_pair` reads them, made
 * a 33-row tree step's products 1.15x slower: weights from memory, not the cache), then 32
 * rows at a time while that many are left, then up to 16. `configured`: the rows the tiles are
 * set up for. */
AMX_CODE static void amx_column(const int8_t *q, int64_t rows, int64_t k, const uint8_t *w,
                                const struct epilogue *whole, int64_t column, float *out,
                                int64_t stride, int32_t *sums, int *configured) {
    for (int64_t r0 = 0; r0 < rows;) {
        int64_t left = rows - r0;
        int n_rows = left < AMX_ROWS ? (int)left : AMX_ROWS;
        if (r0 && left >= 2 * AMX_ROWS) n_rows = 2 * AMX_ROWS;
        int tile_rows = n_rows > AMX_ROWS ? AMX_ROWS : n_rows;
        if (tile_rows != *configured) amx_configure(*configured = tile_rows);
        struct epilogue e = at_rows(whole, r0, column);
        if (n_rows > AMX_ROWS)
            amx_pair(q + r0 * k, k, w, &e, out + r0 * stride, stride, sums);
        else
            amx_tile(q + r0 * k, n_rows, k, w, &e, out + r0 * stride, stride, sums);
        r0 += n_rows;
    }
}

AMX_CODE static void run_tiles_amx(const int8_t *q, int64_t rows, int64_t k,
                                   const uint8_t *packed, struct epilogue whole,
                                   int64_t n_padded, float *out) {
    int64_t tiles = n_padded / TILE;
#pragma omp parallel
    {
        int32_t sums[2 * AMX_ROWS * TILE] __attribute__((aligned(64)));
        int configured = 0;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++)
            amx_column(q, rows, k, packed + t * TILE * k, &whole, t * TILE, out + t * TILE,
                       n_padded, sums, &configured);
        if (configured) _tile_release();  /* the OS need not save tile state for this thread */
    }
}
#else
int amx_enable(int on) { (void)on; return 0; }
#endif

/* x (rows, k) float32; packed weights for n_padded outputs; weight_scales and bias (may be
 * NULL) padded to n_padded; out (rows, n_padded) float32; q (rows * k bytes), row_scales and
 * offsets (rows each) are scratch. k is a multiple of 4. */
void w8a8_linear(const float *x, int64_t rows, int64_t k, const uint8_t *packed,
                 const float *weight_scales, const float *bias, int64_t n_padded, float *out,
                 int8_t *q, float *row_scales, int32_t *offsets) {
    quantize_rows(x, rows, k, q, row_scales, offsets);
    struct epilogue whole = {offsets, row_scales, weight_scales, bias};
#ifdef HAVE_AMX
    if (amx_on && rows >= AMX_MIN_ROWS && k % 64 == 0) {
        run_tiles_amx(q, rows, k, packed, whole, n_padded, out);
        return;
    }
#endif
    run_tiles(int8_kernels, (const char *)q, rows, k, 1, (const char *)packed, whole, n_padded,
              out);
}

/* x (rows, k) bf16 bits; packed bf16 weights for n_padded outputs, laid out like the int8
 * ones with pairs of inputs per lane; bias (may be NULL) float32; out (rows, n_padded) float32.
 * k is a multiple of 2. Needs a CPU with avx512_bf16 (the caller checks). */
void bf16_linear(const uint16_t *x, int64_t rows, int64_t k, const uint16_t *packed,
                 const float *bias, int64_t n_padded, float *out) {
    struct epilogue whole = {0, 0, 0, bias};
    run_tiles(bf16_kernels, (const char *)x, rows, k, 2, (const char *)packed, whole, n_padded,
              out);
}

/* ---- Row-wise float32 operations of the native decoder ------------------------------------
 *
 * Each row is computed on its own, by the same code in the same order whatever rows share the
 * call, so a draft tree's row is bit for bit the one-token step's row at that position (torch's
 * own batched reductions did not guarantee that on every CPU). */

/* exp for 16 lanes: 2^n * p(r), x = n ln2 + r, |r| <= ln2 / 2; a few ulp, same bits every call */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

#define KEYS_AT_ONCE 16
#define ROWS_AT_ONCE 8
#define MOST_GROUP 16 /* query heads per key/value head (the caller checks) */
#define SCORED_AT_ONCE 8 /* query vectors scored against one block of keys together */
#define WEIGHED_AT_ONCE 4 /* query vectors of one row that share each value load */

/* The key slot at place j of row r's list: the shared prefix in place, then the row's extras. */
static inline int64_t slot_of(int64_t j, int64_t shared, const int64_t *more) {
    return j < shared ? j : more[j - shared];
}

/* r[t] lane i becomes r[i] lane t (sixteen 32-bit words each) in four rounds; the round for
 * bit b swaps the off-diagonal b x b blocks of every 2b x 2b block. Data moves only. */
static inline void transpose_words(__m512 r[16]) {
    const __m512i place = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int b = 8; b >= 1; b >>= 1) {
        __m512i bit = _mm512_set1_epi32(b);
        __mmask16 upper = _mm512_test_epi32_mask(place, bit);
        /* r[i] takes r[i + b]'s lower block into its upper; r[i + b] the reverse */
        __m512i low = _mm512_mask_add_epi32(place, upper, place, _mm512_set1_epi32(16 - b));
        __m512i high = _mm512_mask_add_epi32(_mm512_add_epi32(place, bit), upper, place,
                                             _mm512_set1_epi32(16));
        for (int i = 0; i < 16; i++) {
            if (i & b) continue;
            __m512 a = r[i], e = r[i + b];
            r[i] = _mm512_permutex2var_ps(a, low, e);
            r[i + b] = _mm512_permutex2var_ps(a, high, e);
        }
    }
}

/* Sixteen keys (slots[0..count), zeros after) as 64 vectors of 16 lanes: kt[d], lane t, is key
 * t's coordinate d; each 16 x 16 quarter transposed on its own. No rounding. */
static void transpose_keys(const float *k, const int64_t *slots, int count, float *kt) {
    for (int c = 0; c < 4; c++) {
        __m512 r[16];
        for (int t = 0; t < 16; t++)
            r[t] = t < count ? _mm512_loadu_ps(k + slots[t] * 64 + 16 * c) : _mm512_setzero_ps();
        transpose_words(r);
        for (int t = 0; t < 16; t++) _mm512_store_ps(kt + (16 * c + t) * 16, r[t]);
    }
}

/* s[i][t] = scale * (q[i] . key t) for eight query vectors and a transposed block of sixteen
 * keys: lane t of one chain of products over the coordinates 0..63 in order, so a score
 * depends only on its query and its key, never on the lanes or queries beside it. */
static inline void score_block(const float *kt, const float *const *q, float scale,
                               float *const *s) {
    __m512 a[SCORED_AT_ONCE];
    __m512 k0 = _mm512_load_ps(kt);
    for (int i = 0; i < SCORED_AT_ONCE; i++) a[i] = _mm512_mul_ps(_mm512_set1_ps(q[i][0]), k0);
    for (int d = 1; d < 64; d++) {
        __m512 kd = _mm512_load_ps(kt + d * 16);
        for (int i = 0; i < SCORED_AT_ONCE; i++)
            a[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i][d]), kd, a[i]);
    }
    for (int i = 0; i < SCORED_AT_ONCE; i++)
        _mm512_storeu_ps(s[i], _mm512_mul_ps(a[i], _mm512_set1_ps(scale)));
}

/* Scores of `count` query vectors against one transposed block, eight at a time; the last
 * group is filled up with a zero query whose scores land in a scratch row. */
static void score_queries(const float *kt, const float **q, float **s, int count, float scale,
                          const float *zero_query, float *scratch) {
    for (int i = 0; i < count; i += SCORED_AT_ONCE) {
        const float *qi[SCORED_AT_ONCE];
        float *si[SCORED_AT_ONCE];
        for (int e = 0; e < SCORED_AT_ONCE; e++) {
            qi[e] = i + e < count ? q[i + e] : zero_query;
            si[e] = i + e < count ? s[i + e] : scratch;
        }
        score_block(kt, qi, scale, si);
    }
}

/* o[i] += sum over keys [from, to) of w[i][key] * value(key), keys in order, for four query
 * vectors of one row: each value is loaded once for the four; every o[i] is still its own
 * chain of multiply-adds over its keys in order. */
static inline void weigh_values(const float *v, int64_t value_stride, int64_t from, int64_t to,
                                int64_t shared, const int64_t *more, const float *const *w,
                                float *const *o) {
    __m512 a[WEIGHED_AT_ONCE][4];
    for (int i = 0; i < WEIGHED_AT_ONCE; i++)
        for (int c = 0; c < 4; c++) a[i][c] = _mm512_loadu_ps(o[i] + 16 * c);
    for (int64_t key = from; key < to; key++) {
        const float *vk = v + slot_of(key, shared, more) * value_stride;
        __m512 v0 = _mm512_loadu_ps(vk), v1 = _mm512_loadu_ps(vk + 16);
        __m512 v2 = _mm512_loadu_ps(vk + 32), v3 = _mm512_loadu_ps(vk + 48);
        for (int i = 0; i < WEIGHED_AT_ONCE; i++) {
            __m512 weight = _mm512_set1_ps(w[i][key]);
            a[i][0] = _mm512_fmadd_ps(weight, v0, a[i][0]);
            a[i][1] = _mm512_fmadd_ps(weight, v1, a[i][1]);
            a[i][2] = _mm512_fmadd_ps(weight, v2, a[i][2]);
            a[i][3] = _mm512_fmadd_ps(weight, v3, a[i][3]);
        }
    }
    for (int i = 0; i < WEIGHED_AT_ONCE; i++)
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(o[i] + 16 * c, a[i][c]);
}

/* Attention of `rows` query rows (rows, heads, 64) over one layer's keys (kv_heads, capacity,
 * 64) and values (kv_heads, capacity, value_stride), into out (rows, heads * 64). Row i reads
 * the key slots [0, prefix[i]) and then extra[i * extra_width + e] for e < extra_count[i]:
 * its keys in increasing absolute position; no row has more than `most_keys`.
 *
 * A task is one key/value head and up to 8 rows, i.e. up to 8 x (heads / kv_heads) query
 * vectors. It walks the keys 16 at a time: a block is transposed once (once per row where the
 * rows' slots differ, among a tree's extras) and scored against all the task's query vectors,
 * then the values are weighed four query vectors at a time. For each query vector the work is
 * a fixed sequence over its own keys in order (scores, the maximum, exp, the sum, the weighted
 * values), the same whichever rows share the task and wherever its keys lie. */
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
    float *zero_weights = calloc((size_t)width, sizeof(float));
    float kt[64 * KEYS_AT_ONCE] __attribute__((aligned(64)));
    float zero_query[64] = {0}, scratch[64] = {0}; /* scratch: where padding lanes write */
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
        /* scores, scaled */
        const float *q[ROWS_AT_ONCE * MOST_GROUP];
        float *s[ROWS_AT_ONCE * MOST_GROUP];
        int64_t slots[KEYS_AT_ONCE];
        for (int64_t j = 0; j < longest; j += KEYS_AT_ONCE) {
            /* one block for all rows where every key a row reads here is in its shared prefix */
            int together = 1, count = 0;
            for (int64_t r = r0; r < r1; r++) {
                int64_t n = prefix[r] + extra_count[r];
                if (j >= n) continue;
                int64_t end = j + KEYS_AT_ONCE < n ? j + KEYS_AT_ONCE : n;
                together &= end <= prefix[r];
                for (int64_t g = 0; g < group; g++, count++) {
                    q[count] = query + (r * heads + kv * group + g) * dim;
                    s[count] = scores + ((r - r0) * group + g) * width + j;
                }
            }
            if (together) {
                int64_t end = j + KEYS_AT_ONCE < longest ? j + KEYS_AT_ONCE : longest;
                for (int64_t t = 0; t < end - j; t++) slots[t] = j + t;
                transpose_keys(k, slots, (int)(end - j), kt);
                score_queries(kt, q, s, count, scale, zero_query, scratch);
                continue;
            }
            for (int64_t r = r0, first = 0; r < r1; r++) {
                int64_t shared = prefix[r], n = shared + extra_count[r];
                if (j >= n) continue;
                int64_t end = j + KEYS_AT_ONCE < n ? j + KEYS_AT_ONCE : n;
                for (int64_t t = 0; t < end - j; t++)
                    slots[t] = slot_of(j + t, shared, extra + r * extra_width);
                transpose_keys(k, slots, (int)(end - j), kt);
                score_queries(kt, q + first, s + first, (int)group, scale, zero_query, scratch);
                first += group;
            }
        }
        /* weights: exp(score - the row's maximum), and their total */
        float totals[ROWS_AT_ONCE * MOST_GROUP];
        for (int64_t r = r0; r < r1; r++) {
            int64_t n = prefix[r] + extra_count[r];
            for (int64_t g = 0; g < group; g++) {
                float *sg = scores + ((r - r0) * group + g) * width;
                __m512 most = _mm512_set1_ps(-INFINITY);
                int64_t i = 0;
                for (; i + 16 <= n; i += 16) most = _mm512_max_ps(most, _mm512_loadu_ps(sg + i));
                if (i < n) {
                    __mmask16 tail = (__mmask16)((1u << (n - i)) - 1u);
                    most = _mm512_mask_max_ps(most, tail, most, _mm512_maskz_loadu_ps(tail, sg + i));
                }
                __m512 total = _mm512_setzero_ps();
                __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(most));
                for (i = 0; i + 16 <= n; i += 16) {
                    __m512 w = exp16(_mm512_sub_ps(_mm512_loadu_ps(sg + i), shift));
                    _mm512_storeu_ps(sg + i, w);
                    total = _mm512_add_ps(total, w);
                }
                if (i < n) {
                    __mmask16 tail = (__mmask16)((1u << (n - i)) - 1u);
                    __m512 w = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, sg + i), shift));
                    w = _mm512_maskz_mov_ps(tail, w);
                    _mm512_mask_storeu_ps(sg + i, tail, w);
                    total = _mm512_add_ps(total, w);
                }
                totals[(r - r0) * group + g] = _mm512_reduce_add_ps(total);
            }
        }
        /* weighted values, keys in order, accumulated in `out` */
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++)
                for (int64_t d = 0; d < dim; d++) out[(r * heads + kv * group + g) * dim + d] = 0;
        for (int64_t j = 0; j < longest; j += KEYS_AT_ONCE) {
            for (int64_t r = r0; r < r1; r++) {
                int64_t shared = prefix[r], n = shared + extra_count[r];
                if (j >= n) continue;
                int64_t end = j + KEYS_AT_ONCE < n ? j + KEYS_AT_ONCE : n;
                for (int64_t g = 0; g < group; g += WEIGHED_AT_ONCE) {
                    const float *w[WEIGHED_AT_ONCE];
                    float *o[WEIGHED_AT_ONCE];
                    for (int e = 0; e < WEIGHED_AT_ONCE; e++) {
                        int real = g + e < group;
                        w[e] = real ? scores + ((r - r0) * group + g + e) * width : zero_weights;
                        o[e] = real ? out + (r * heads + kv * group + g + e) * dim : scratch;
                    }
                    weigh_values(v, value_stride, j, end, shared, extra + r * extra_width, w, o);
                }
            }
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++) {
                float *o = out + (r * heads + kv * group + g) * dim;
                __m512 inverse = _mm512_set1_ps(1.0f / totals[(r - r0) * group + g]);
                for (int64_t d = 0; d < dim; d += 16)
                    _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), inverse));
            }
    }
    free(zero_weights);
    free(scores);
    }
}

#ifdef HAVE_AMX
/* ---- bfloat16 operands for the AMX attention below ----------------------------------------- */

typedef uint32_t pair_t; /* two bfloat16, the first in the lower half */

/* 32 floats (first16, then next16) as 16 pairs, in order */
static inline __m512i bf16_pairs(__m512 first16, __m512 next16) {
    return (__m512i)_mm512_cvtne2ps_pbh(next16, first16);
}

/* Sixteen keys (slots[0..count), zeros after) as 32 vectors of 16 lanes: kb[p], lane t, holds
 * key t's coordinates 2p and 2p + 1. */
static void transpose_keys_bf16(const float *k, const int64_t *slots, int count, pair_t *kb) {
    for (int c = 0; c < 2; c++) { /* coordinates 32c.. 32c + 31: pairs 16c.. 16c + 15 */
        __m512 r[16];
        for (int t = 0; t < 16; t++) {
            const float *key = k + (t < count ? slots[t] : 0) * 64 + 32 * c;
            r[t] = t < count ? _mm512_castsi512_ps(bf16_pairs(_mm512_loadu_ps(key),
                                                              _mm512_loadu_ps(key + 16)))
                             : _mm512_setzero_ps();
        }
        transpose_words(r);
        for (int t = 0; t < 16; t++) _mm512_store_ps((float *)kb + (16 * c + t) * 16, r[t]);
    }
}

/* A query vector's 64 coordinates as 32 pairs */
static inline void query_pairs(const float *q, pair_t *out) {
    _mm512_storeu_si512(out, bf16_pairs(_mm512_loadu_ps(q), _mm512_loadu_ps(q + 16)));
    _mm512_storeu_si512(out + 16, bf16_pairs(_mm512_loadu_ps(q + 32), _mm512_loadu_ps(q + 48)));
}

/* Keys [from, to) of a row's list, zeros up to from + 16, as 8 pairs of keys by 64 coordinates:
 * vb[(m * 4 + c) * 16 + d] holds coordinate 16c + d of keys from + 2m and from + 2m + 1. */
static void pack_values_bf16(const float *v, int64_t stride, int64_t from, int64_t to,
                             int64_t shared, const int64_t *more, pair_t *vb) {
    static const int16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4,  20, 5,  21, 6,  22, 7,  23,
                                      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i interleave = _mm512_loadu_si512(order);
    for (int m = 0; m < KEYS_AT_ONCE / 2; m++) {
        int64_t first = from + 2 * m, second = first + 1;
        const float *a = first < to ? v + slot_of(first, shared, more) * stride : NULL;
        const float *b = second < to ? v + slot_of(second, shared, more) * stride : NULL;
        for (int c = 0; c < 4; c++) {
            __m512 x = a ? _mm512_loadu_ps(a + 16 * c) : _mm512_setzero_ps();
            __m512 y = b ? _mm512_loadu_ps(b + 16 * c) : _mm512_setzero_ps();
            _mm512_storeu_si512(vb + (m * 4 + c) * 16,
                               _mm512_permutexvar_epi16(interleave, bf16_pairs(x, y)));
        }
    }
}

/* ---- Attention on AMX tiles in bfloat16 (Sapphire Rapids and later) ------------------------
 *
 * Why: in a 2,048-token prefill half the time was `attention` above, at the float32 FMA peak,
 * and a 17-row tree step over 1,500 keys spent 30% of its time there. One `tdpbf16ps` does
 * 16 x 16 outputs x 32 bfloat16 products. (`vdpbf16ps` on the vector units measured slower than
 * the float32 FMAs here: one port.)
 *
 * The same attention in other arithmetic: queries, keys, weights and values rounded to
 * bfloat16 (nearest even), products exact, every sum float32. A score is one tile product over
 * the 64 coordinates; a row's weighted values are summed 32 keys at a time in the row's own key
 * order (chunk c holds its keys [32c, 32c + 32)), added chunk after chunk in float32; the
 * softmax, exp((s - the row's max) * scale), in float32 with `attention`'s exp. What an output
 * element gets depends only on its own query, keys, weights and values: which rows share a
 * tile, and whether a chunk was read from the shared prefix or gathered for the row alone, only
 * moves data. Past a row's last key its weights are zeros, against zero values in its own
 * gather (a shared chunk has only keys every row reads), so even a zero's sign is the row's own.
 *
 * A task is one key/value head and up to 8 rows. The keys [0, P) that every row reads in place
 * (P the smallest prefix, down to a multiple of 32) run on tiles of 16 query vectors across the
 * rows; the rest (a tree's extras, a prompt's last few keys) row by row on tiles of the row's
 * own query vectors.
 */
#define AMX_BF16_CODE __attribute__((target("amx-tile,amx-bf16")))
#define CHUNK_KEYS 32
#define CHUNK_WORDS (CHUNK_KEYS / 2 * 64) /* a chunk's values: 16 pairs x 64 coordinates */

/* tiles 0-3: sums (query vectors x 16 keys or coordinates); 4-5: queries or weights, as pairs;
 * 6-7: keys or values, as pairs. `vectors` query vectors a tile: 16, or one row's group. */
AMX_BF16_CODE static void attention_tiles(int vectors) {
    struct tile_config c = {0};
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = t < 6 ? (uint8_t)vectors : 16;
    }
    load_tile_config(&c);
}

/* Raw scores (stride `width` floats) of the query vectors at q (32 pairs each, in a row) against
 * sixteen keys transposed in kb (32 x 16 pairs): the coordinates 0-31 then 32-63. */
AMX_BF16_CODE static inline void score_tile(const pair_t *q, const pair_t *kb, float *s,
                                            int64_t width) {
    _tile_zero(0);
    _tile_loadd(4, q, 32 * sizeof(pair_t));
    _tile_loadd(5, q + 16, 32 * sizeof(pair_t));
    _tile_loadd(6, kb, 16 * sizeof(pair_t));
    _tile_loadd(7, kb + 16 * 16, 16 * sizeof(pair_t));
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(0, 5, 7);
    _tile_stored(0, s, width * (int64_t)sizeof(float));
}

/* sums (tiles 0-3) += weights (a chunk's 16 pairs per vector, `stride` pairs apart) times a
 * chunk's packed values, 16 coordinates a tile */
AMX_BF16_CODE static inline void weigh_chunk(const pair_t *w, int64_t stride,
                                             const pair_t *packed) {
    const int64_t pair_row = 4 * 16 * sizeof(pair_t); /* one pair of keys, 64 coordinates */
    _tile_loadd(4, w, stride * (int64_t)sizeof(pair_t));
    _tile_loadd(6, packed, pair_row);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, packed + 16, pair_row);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(6, packed + 32, pair_row);
    _tile_dpbf16ps(2, 4, 6);
    _tile_loadd(7, packed + 48, pair_row);
    _tile_dpbf16ps(3, 4, 7);
}

/* (the tile intrinsics take their tile numbers as literals) */
AMX_BF16_CODE static inline void load_sums(const float *sums) {
    _tile_loadd(0, sums, 64 * sizeof(float));
    _tile_loadd(1, sums + 16, 64 * sizeof(float));
    _tile_loadd(2, sums + 32, 64 * sizeof(float));
    _tile_loadd(3, sums + 48, 64 * sizeof(float));
}

AMX_BF16_CODE static inline void store_sums(float *sums) {
    _tile_stored(0, sums, 64 * sizeof(float));
    _tile_stored(1, sums + 16, 64 * sizeof(float));
    _tile_stored(2, sums + 32, 64 * sizeof(float));
    _tile_stored(3, sums + 48, 64 * sizeof(float));
}

AMX_BF16_CODE static inline void zero_sums(void) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

/* most[i] := max(most[i], the scores s[i][0, count)) for `vectors` rows of scores (`width`
 * apart) just stored by a tile: read while they are in the L1 cache, not in a pass of its own.
 * A maximum does not round, so how a row's keys are cut into blocks does not change it. */
static inline void running_max(const float *s, int64_t width, int vectors, int64_t count,
                               __m512 *most) {
    __mmask16 live = count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1u);
    for (int i = 0; i < vectors; i++)
        most[i] = _mm512_mask_max_ps(most[i], live, most[i],
                                     _mm512_maskz_loadu_ps(live, s + i * width));
}

/* The weights exp((s - max) * scale) of a row's n scores, as pairs into w, zeros on to a
 * multiple of 32 keys; -> their float32 total (vectors of 16 added in key order). */
static float softmax_pairs(const float *s, int64_t n, __m512 most, float scale, pair_t *w) {
    __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(most)), factor = _mm512_set1_ps(scale);
    __m512 total = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += CHUNK_KEYS) {
        __m512 weight[2];
        for (int h = 0; h < 2; h++) {
            int64_t left = n - i - 16 * h;
            __mmask16 live = left >= 16 ? (__mmask16)0xffff
                             : left > 0 ? (__mmask16)((1u << left) - 1u)
                                        : (__mmask16)0;
            __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, s + i + 16 * h), shift);
            weight[h] = _mm512_maskz_mov_ps(live, exp16(_mm512_mul_ps(x, factor)));
            total = _mm512_add_ps(total, weight[h]);
        }
        _mm512_storeu_si512(w + i / 2, bf16_pairs(weight[0], weight[1]));
    }
    return _mm512_reduce_add_ps(total);
}

/* `attention` on AMX tiles in bfloat16 (same arguments); the caller checks amx_bf16 and that
 * `amx_enable` succeeded. */
AMX_BF16_CODE void attention_amx(const float *query, int64_t rows, int64_t heads,
                                 int64_t kv_heads, const float *keys, const float *values,
                                 int64_t capacity, int64_t value_stride, const int64_t *prefix,
                                 const int64_t *extra, const int64_t *extra_count,
                                 int64_t extra_width, float scale, float *out,
                                 int64_t most_keys) {
    const int64_t dim = 64, group = heads / kv_heads;
    const int64_t row_groups = (rows + ROWS_AT_ONCE - 1) / ROWS_AT_ONCE;
    const int64_t vectors = (ROWS_AT_ONCE * group + 15) / 16 * 16; /* whole tiles */
    /* a score row: the keys, then room for the last chunk */
    const int64_t width = (most_keys / CHUNK_KEYS + 1) * CHUNK_KEYS, pair_width = width / 2;
    const int64_t most_chunks = most_keys / CHUNK_KEYS + 1;
#pragma omp parallel
    {
    float *scores = calloc((size_t)(vectors * width), sizeof(float));
    pair_t *weights = calloc((size_t)(vectors * pair_width), sizeof(pair_t));
    pair_t *queries = calloc((size_t)(vectors * 32), sizeof(pair_t));
    float *sums = calloc((size_t)(vectors * dim), sizeof(float));
    pair_t *shared_values = malloc(sizeof(pair_t) * (size_t)(most_chunks * CHUNK_WORDS));
    pair_t own_values[CHUNK_WORDS] __attribute__((aligned(64)));
    pair_t kb[32 * 16] __attribute__((aligned(64)));
    float totals[ROWS_AT_ONCE * MOST_GROUP];
    __m512 most[ROWS_AT_ONCE * MOST_GROUP]; /* per query vector, 16 lanes of running maxima */
    int64_t slots[KEYS_AT_ONCE];
    int configured = 0;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < kv_heads * row_groups; task++) {
        int64_t kv = task % kv_heads, r0 = (task / kv_heads) * ROWS_AT_ONCE;
        int64_t r1 = r0 + ROWS_AT_ONCE < rows ? r0 + ROWS_AT_ONCE : rows;
        int64_t tiles = ((r1 - r0) * group + 15) / 16;
        const float *k = keys + kv * capacity * dim;
        const float *v = values + kv * capacity * value_stride;
        int64_t shared = prefix[r0];
        for (int64_t r = r0; r < r1; r++) shared = prefix[r] < shared ? prefix[r] : shared;
        shared -= shared % CHUNK_KEYS;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++)
                query_pairs(query + (r * heads + kv * group + g) * dim,
                            queries + ((r - r0) * group + g) * 32);
        /* scores: the shared keys across the rows, then each row's own; their maxima */
        for (int64_t i = 0; i < vectors; i++) most[i] = _mm512_set1_ps(-INFINITY);
        if (shared) {
            if (configured != 16) attention_tiles(configured = 16);
            /* a block's maxima one block later: a load right after a tile's store waits */
            for (int64_t j = 0; j <= shared; j += KEYS_AT_ONCE) {
                if (j < shared) {
                    for (int t = 0; t < KEYS_AT_ONCE; t++) slots[t] = j + t;
                    transpose_keys_bf16(k, slots, KEYS_AT_ONCE, kb);
                    for (int64_t m = 0; m < tiles; m++)
                        score_tile(queries + m * 16 * 32, kb, scores + m * 16 * width + j, width);
                }
                for (int64_t m = 0; j && m < tiles; m++)
                    running_max(scores + m * 16 * width + j - KEYS_AT_ONCE, width, 16,
                                KEYS_AT_ONCE, most + m * 16);
            }
        }
        if (configured != group) attention_tiles(configured = (int)group);
        for (int64_t r = r0; r < r1; r++) {
            int64_t n = prefix[r] + extra_count[r], at = (r - r0) * group;
            for (int64_t j = shared; j < n + KEYS_AT_ONCE; j += KEYS_AT_ONCE) {
                if (j < n) {
                    int64_t end = j + KEYS_AT_ONCE < n ? j + KEYS_AT_ONCE : n;
                    for (int64_t t = 0; t < end - j; t++)
                        slots[t] = slot_of(j + t, prefix[r], extra + r * extra_width);
                    transpose_keys_bf16(k, slots, (int)(end - j), kb);
                    score_tile(queries + at * 32, kb, scores + at * width + j, width);
                }
                if (j > shared)
                    running_max(scores + at * width + j - KEYS_AT_ONCE, width, (int)group,
                                n - (j - KEYS_AT_ONCE), most + at);
            }
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++) {
                int64_t at = (r - r0) * group + g;
                totals[at] = softmax_pairs(scores + at * width, prefix[r] + extra_count[r],
                                           most[at], scale, weights + at * pair_width);
            }
        /* weighted values: the shared chunks across the rows, then each row's own */
        if (shared) {
            if (configured != 16) attention_tiles(configured = 16);
            for (int64_t c = 0; c < shared / CHUNK_KEYS; c++) {
                pair_t *packed = shared_values + c * CHUNK_WORDS;
                int64_t j = c * CHUNK_KEYS;
                pack_values_bf16(v, value_stride, j, j + 16, INT64_MAX, NULL, packed);
                pack_values_bf16(v, value_stride, j + 16, j + 32, INT64_MAX, NULL,
                                 packed + CHUNK_WORDS / 2);
            }
            for (int64_t m = 0; m < tiles; m++) {
                zero_sums();
                for (int64_t c = 0; c < shared / CHUNK_KEYS; c++)
                    weigh_chunk(weights + m * 16 * pair_width + c * 16, pair_width,
                                shared_values + c * CHUNK_WORDS);
                store_sums(sums + m * 16 * dim);
            }
        }
        if (configured != group) attention_tiles(configured = (int)group);
        for (int64_t r = r0; r < r1; r++) {
            int64_t n = prefix[r] + extra_count[r], at = (r - r0) * group;
            const int64_t *more = extra + r * extra_width;
            if (shared) {
                load_sums(sums + at * dim);
            } else {
                zero_sums();
            }
            for (int64_t j = shared; j < n; j += CHUNK_KEYS) {
                int64_t end = j + CHUNK_KEYS < n ? j + CHUNK_KEYS : n;
                pack_values_bf16(v, value_stride, j, end, prefix[r], more, own_values);
                pack_values_bf16(v, value_stride, j + 16, end, prefix[r], more,
                                 own_values + CHUNK_WORDS / 2);
                weigh_chunk(weights + at * pair_width + j / 2, pair_width, own_values);
            }
            store_sums(sums + at * dim);
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t g = 0; g < group; g++) {
                int64_t at = (r - r0) * group + g;
                float *o = out + (r * heads + kv * group + g) * dim;
                __m512 inverse = _mm512_set1_ps(1.0f / totals[at]);
                for (int64_t d = 0; d < dim; d += 16)
                    _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(sums + at * dim + d),
                                                          inverse));
            }
    }
    if (configured) _tile_release();
    free(shared_values);
    free(sums);
    free(queries);
    free(weights);
    free(scores);
    }
}
#endif

/* out = x * (1 / sqrt(mean(x^2) + eps)) * weight, row by row; width a multiple of 16 */
void rms_norm(const float *x, int64_t rows, int64_t width, const float *weight, float eps,
              float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * width;
        __m512 squares = _mm512_setzero_ps();
        for (int64_t i = 0; i < width; i += 16) {
            __m512 a = _mm512_loadu_ps(row + i);
            squares = _mm512_fmadd_ps(a, a, squares);
        }
        float mean = _mm512_reduce_add_ps(squares) / (float)width;
        __m512 scale = _mm512_set1_ps(1.0f / sqrtf(mean + eps));
        for (int64_t i = 0; i < width; i += 16) {
            __m512 a = _mm512_mul_ps(_mm512_loadu_ps(row + i), scale);
            _mm512_storeu_ps(out + r * width + i, _mm512_mul_ps(a, _mm512_loadu_ps(weight + i)));
        }
    }
}

/* silu(g) * up, 16 lanes. The exponential is taken of -|g| (never overflows): sigmoid =
 * 1 / (1 + e) above zero, e / (1 + e) below. */
static inline __m512 silu_times(__m512 g, __m512 up) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(g)));
    __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
    __mmask16 positive = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 numerator = _mm512_mask_blend_ps(positive, e, _mm512_set1_ps(1.0f));
    __m512 silu = _mm512_mul_ps(g, _mm512_div_ps(numerator, denominator));
    return _mm512_mul_ps(silu, up);
}

/* out = silu(gate) * up for rows of [gate | up], width a multiple of 16 */
void silu_mul(const float *gate_up, int64_t rows, int64_t width, float *out) {
#pragma omp parallel for schedule(static) if (rows >= 8)
    for (int64_t r = 0; r < rows; r++) {
        const float *gate = gate_up + r * 2 * width, *up = gate + width;
        for (int64_t i = 0; i < width; i += 16)
            _mm512_storeu_ps(out + r * width + i,
                             silu_times(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    }
}

/* ---- The MLP's gated product: silu(x . gate^T) * (x . up^T) in one pass ------------------
 *
 * Why: as two products and `silu_mul`, a 256-row prompt chunk wrote its (rows x 2 x 4,864)
 * float32 [gate | up] block (10 MB, past the caches) and read it back; here each thread takes
 * a gate tile and the up tile of the same 64 outputs, row group by row group, and only the
 * activated (rows x 64) block leaves its cache. The sums, epilogues and `silu_times` are the
 * ones `w8a8_linear` and `silu_mul` run, so every bit is theirs. */
static void silu_rows(const float *g, const float *u, int64_t n_rows, float *out,
                      int64_t stride) {
    for (int64_t r = 0; r < n_rows; r++)
        for (int b = 0; b < BLOCKS; b++)
            _mm512_storeu_ps(out + r * stride + b * LANES,
                             silu_times(_mm512_load_ps(g + r * TILE + b * LANES),
                                        _mm512_load_ps(u + r * TILE + b * LANES)));
}

#ifdef HAVE_AMX
AMX_CODE static void run_gated_amx(const int8_t *q, int64_t rows, int64_t k, const uint8_t *gate,
                                   const uint8_t *up, struct epilogue g_whole,
                                   struct epilogue u_whole, int64_t n_padded, float *out) {
#pragma omp parallel
    {
        int32_t sums[2 * AMX_ROWS * TILE] __attribute__((aligned(64)));
        float g[2 * AMX_ROWS * TILE] __attribute__((aligned(64)));
        float u[2 * AMX_ROWS * TILE] __attribute__((aligned(64)));
        int configured = 0;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_padded / TILE; t++) {
            /* 32 rows at a time: the gate and up blocks stay in the cache for silu_rows */
            for (int64_t r0 = 0; r0 < rows; r0 += 2 * AMX_ROWS) {
                int64_t n_rows = rows - r0 < 2 * AMX_ROWS ? rows - r0 : 2 * AMX_ROWS;
                const int8_t *qr = q + r0 * k;
                struct epilogue eg = at_rows(&g_whole, r0, 0), eu = at_rows(&u_whole, r0, 0);
                amx_column(qr, n_rows, k, gate + t * TILE * k, &eg, t * TILE, g, TILE, sums,
                           &configured);
                amx_column(qr, n_rows, k, up + t * TILE * k, &eu, t * TILE, u, TILE, sums,
                           &configured);
                silu_rows(g, u, n_rows, out + r0 * n_padded + t * TILE, n_padded);
            }
        }
        if (configured) _tile_release();
    }
}
#endif

/* x (rows, k) float32; gate and up packed as `w8a8_linear` takes them, each n_padded outputs
 * (their scales padded to it, no bias); out (rows, n_padded); q, row_scales, offsets scratch. */
void w8a8_gated(const float *x, int64_t rows, int64_t k, const uint8_t *gate,
                const float *gate_scales, const uint8_t *up, const float *up_scales,
                int64_t n_padded, float *out, int8_t *q, float *row_scales, int32_t *offsets) {
    quantize_rows(x, rows, k, q, row_scales, offsets);
    struct epilogue g_whole = {offsets, row_scales, gate_scales, 0};
    struct epilogue u_whole = {offsets, row_scales, up_scales, 0};
#ifdef HAVE_AMX
    if (amx_on && rows >= AMX_MIN_ROWS && k % 64 == 0) {
        run_gated_amx(q, rows, k, gate, up, g_whole, u_whole, n_padded, out);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n_padded / TILE; t++) {
        float g[GROUP * TILE] __attribute__((aligned(64)));
        float u[GROUP * TILE] __attribute__((aligned(64)));
        int64_t column = t * TILE;
        for (int64_t r0 = 0; r0 < rows; r0 += GROUP) {
            int64_t n_rows = rows - r0 < GROUP ? rows - r0 : GROUP;
            struct epilogue eg = at_rows(&g_whole, r0, column);
            struct epilogue eu = at_rows(&u_whole, r0, column);
            int8_kernels[n_rows]((const char *)(q + r0 * k), k,
                                 (const char *)(gate + t * TILE * k), &eg, g, TILE);
            int8_kernels[n_rows]((const char *)(q + r0 * k), k, (const char *)(up + t * TILE * k),
                                 &eu, u, TILE);
            silu_rows(g, u, n_rows, out + r0 * n_padded + column, n_padded);
        }
    }
}

/* RoPE in the half-split layout, dim a multiple of 32: x[r, h] (strides x_row, x_head) into
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
            for (int64_t i = 0; i < half; i += 16) {
                __m512 c = _mm512_loadu_ps(cos + r * half + i);
                __m512 s = _mm512_loadu_ps(sin + r * half + i);
                __m512 first = _mm512_loadu_ps(in + i), second = _mm512_loadu_ps(in + half + i);
                _mm512_storeu_ps(to + i, _mm512_sub_ps(_mm512_mul_ps(first, c),
                                                       _mm512_mul_ps(second, s)));
                _mm512_storeu_ps(to + half + i, _mm512_add_ps(_mm512_mul_ps(second, c),
                                                              _mm512_mul_ps(first, s)));
            }
        }
}

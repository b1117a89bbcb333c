/* dctq.jpeg._turbo: quantized DCT coefficients of a JPEG held in memory, via libjpeg-turbo.
 *
 * read_coefficients(data, max_memory, grid, window) wraps jpeg_read_coefficients() over jpeg_mem_src(); with
 * grid=True it writes the contract's planes and maps 4:4:4 / 4:2:2 / 4:4:0 chroma onto the 4:2:0 grid in the
 * DCT domain (the map of jpeg/chroma.py, sparse, vectorised). entropy_decode(data) is a benchmark diagnostic.
 * Why C: jpeglib (the pure-Python-facing reference) reads only from paths, goes through a temporary file
 * and entropy-decodes twice; this reads straight from the bytes and releases the GIL while libjpeg works.
 *
 * libjpeg reports errors by calling error_exit(), whose default calls exit(): here it longjmps back so
 * that every error becomes a Python exception. Warnings (truncated or corrupt entropy-coded data, which
 * libjpeg zero-fills and goes on) are collected and returned; the Python side decides whether they are
 * fatal. Nothing is ever printed to stderr.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* libjpeg's internal IDCT manager (jpegint.h, not installed everywhere): its first two members, the same
 * from libjpeg 6b to libjpeg-turbo 3. stream_window replaces inverse_DCT after jpeg_start_decompress. */
typedef void (*dctq_inverse_dct)(j_decompress_ptr cinfo, jpeg_component_info *compptr, JCOEFPTR coef_block,
                                 JSAMPARRAY output_buf, JDIMENSION output_col);
struct jpeg_inverse_dct {
    void (*start_pass)(j_decompress_ptr cinfo);
    dctq_inverse_dct inverse_DCT[MAX_COMPONENTS];
};

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_WARNINGS 8

/* What the error manager records; `jmp` is where error_exit returns to. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    int error_code;
    char error_msg[JMSG_LENGTH_MAX];
    int num_warnings; /* every warning, even those past MAX_WARNINGS */
    int warning_codes[MAX_WARNINGS];
    char warning_msgs[MAX_WARNINGS][JMSG_LENGTH_MAX];
} dctq_error_mgr;

static void dctq_error_exit(j_common_ptr cinfo) {
    dctq_error_mgr *err = (dctq_error_mgr *)cinfo->err;
    err->error_code = err->pub.msg_code;
    (*err->pub.format_message)(cinfo, err->error_msg);
    longjmp(err->jmp, 1);
}

static void dctq_emit_message(j_common_ptr cinfo, int msg_level) {
    dctq_error_mgr *err = (dctq_error_mgr *)cinfo->err;
    if (msg_level >= 0) {
        return; /* trace messages */
    }
    if (err->num_warnings < MAX_WARNINGS) {
        err->warning_codes[err->num_warnings] = err->pub.msg_code;
        (*err->pub.format_message)(cinfo, err->warning_msgs[err->num_warnings]);
    }
    err->num_warnings++;
    err->pub.num_warnings++;
}

static void dctq_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* Warning classes handed to Python: data-bearing ones decide whether the coefficients can be trusted. */
static const char *warning_kind(int code) {
    switch (code) {
    case JWRN_JPEG_EOF:
        return "truncated";
    case JWRN_ADOBE_XFORM:
    case JWRN_JFIF_MAJOR:
    case JWRN_BOGUS_ICC:
        return "benign";
    default:
        return "corrupt";
    }
}

static const char *error_kind(int code) {
    switch (code) {
    case JERR_NO_SOI:
    case JERR_INPUT_EMPTY:
        return "not_jpeg";
    case JERR_BAD_PRECISION:
    case JERR_NOT_COMPILED:
    case JERR_ARITH_NOTIMPL:
    case JERR_NO_ARITH_TABLE:
    case JERR_EMPTY_IMAGE:
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW:
    case JERR_COMPONENT_COUNT:
        return "unsupported";
    case JERR_NO_BACKING_STORE:
    case JERR_OUT_OF_MEMORY:
        return "too_large";
    default:
        return "corrupt";
    }
}

typedef struct {
    int h_samp, v_samp;
    int height_in_blocks, width_in_blocks;
    /* Output grid [64, out_rows, out_cols] at out_offset int16s into buffer out_buffer, whose row 0, column 0
     * is block (src_top, src_left) of the component (negative or past the image: zeros): the blocks inside
     * the image are copied, the rest of it is written with zeros. */
    int out_rows, out_cols, out_buffer;
    int src_top, src_left;
    size_t out_offset;
    /* Chroma mapped onto the 4:2:0 grid in the DCT domain (read_blocks, grid=True): source blocks averaged
     * per output block across (map_h) and down (map_v); 1 x 1: copied as they are. */
    int map_h, map_v;
} component_info;

/* State shared by the two GIL-free phases of one read. `cinfo` comes first: the IDCT hook of
 * stream_window finds the reader from the cinfo pointer libjpeg hands it. */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    dctq_error_mgr err;
    int created;
    component_info comps[MAX_COMPONENTS];
    int has_qt; /* every component has a table */
    unsigned short qt[MAX_COMPONENTS][DCTSIZE2];
    /* stream_window: the output buffers, and the row pointers handed to jpeg_read_raw_data per component
     * (the hook tells a block's row within the iMCU row from its pointer into them; nothing is written) */
    char **buffers;
    jvirt_barray_ptr *arrays; /* read_blocks: libjpeg's whole-image block arrays, from decode_arrays */
    JSAMPROW raw_rows[MAX_COMPONENTS][MAX_SAMP_FACTOR * DCTSIZE];
    JSAMPLE dummy_row[DCTSIZE];
} reader;

/* Phase 1: header only, so that Python can allocate the output before decoding. */
static int read_header(reader *r, const unsigned char *data, size_t size, long max_memory) {
    int ci;
    if (setjmp(r->err.jmp)) {
        return 0;
    }
    jpeg_create_decompress(&r->cinfo);
    r->created = 1;
    /* Bounds what a forged header (a huge declared size) can make libjpeg allocate. */
    r->cinfo.mem->max_memory_to_use = max_memory;
    jpeg_mem_src(&r->cinfo, data, (unsigned long)size);
    jpeg_read_header(&r->cinfo, TRUE);
    for (ci = 0; ci < r->cinfo.num_components && ci < MAX_COMPONENTS; ci++) {
        jpeg_component_info *c = &r->cinfo.comp_info[ci];
        component_info *o = &r->comps[ci];
        o->h_samp = c->h_samp_factor;
        o->v_samp = c->v_samp_factor;
        o->height_in_blocks = (int)c->height_in_blocks;
        o->width_in_blocks = (int)c->width_in_blocks;
    }
    return 1;
}

/* Whether grid=True puts the frame's chroma on the 4:2:0 grid, and how: three components, Cb and Cr sampled
 * alike, luma sampled once or twice as finely as chroma each way. *fh, *fv: how many chroma blocks across
 * and down make one 4:2:0 block (2 x 2: 4:4:4, 1 x 2: 4:2:2, 2 x 1: 4:4:0, 1 x 1: 4:2:0 itself). */
static int chroma_factors(const reader *r, int *fh, int *fv) {
    const component_info *c = r->comps;
    int rh, rv;
    if (r->cinfo.num_components != 3 || c[1].h_samp != c[2].h_samp || c[1].v_samp != c[2].v_samp ||
        c[1].h_samp <= 0 || c[1].v_samp <= 0 || c[0].h_samp % c[1].h_samp || c[0].v_samp % c[1].v_samp) {
        return 0;
    }
    rh = c[0].h_samp / c[1].h_samp;
    rv = c[0].v_samp / c[1].v_samp;
    if (rh < 1 || rh > 2 || rv < 1 || rv > 2) {
        return 0;
    }
    *fh = 2 / rh;
    *fv = 2 / rv;
    return 1;
}

/* Whether the frame is 4:2:0: three components, Cb and Cr alike, luma sampled twice as finely each way. */
static int is_420(const reader *r) {
    int fh, fv;
    return chroma_factors(r, &fh, &fv) && fh == 1 && fv == 1;
}

/* A window of the luma grid (grid=True): rows x cols blocks from block (top, left); all even. */
typedef struct {
    int used, top, left, rows, cols;
} window;

/* Decide every component's output grid and buffer (see read_coefficients' docstring); returns the
 * number of buffers. With a window (grid=True, gray or 4:2:0 frames only) luma takes the window and
 * chroma its half. */
static int plan_output(reader *r, int grid, const window *w) {
    int ci, n = r->cinfo.num_components, buffers = 0;
    int hb = 2 * (int)((r->cinfo.image_height + 15) / 16), wb = 2 * (int)((r->cinfo.image_width + 15) / 16);
    int top = 0, left = 0, fh = 1, fv = 1;
    int on_grid = grid && chroma_factors(r, &fh, &fv);
    if (grid && w->used) {
        hb = w->rows;
        wb = w->cols;
        top = w->top;
        left = w->left;
    }
    for (ci = 0; ci < n; ci++) {
        component_info *o = &r->comps[ci];
        o->out_rows = o->height_in_blocks;
        o->out_cols = o->width_in_blocks;
        o->out_buffer = buffers++;
        o->out_offset = 0;
        o->src_top = 0;
        o->src_left = 0;
        o->map_h = 1;
        o->map_v = 1;
        if (grid && ci == 0) {
            o->out_rows = hb;
            o->out_cols = wb;
            o->src_top = top;
            o->src_left = left;
        } else if (on_grid) {
            /* Cb and Cr on the 4:2:0 chroma grid, Cr right after Cb in Cb's buffer: [128, Hb/2, Wb/2] with no
             * concatenation in Python. A window comes only with 4:2:0 frames (read_coefficients). */
            o->out_rows = hb / 2;
            o->out_cols = wb / 2;
            o->src_top = top / 2;
            o->src_left = left / 2;
            o->map_h = fh;
            o->map_v = fv;
            if (ci == 2) {
                o->out_buffer = r->comps[1].out_buffer;
                o->out_offset = (size_t)DCTSIZE2 * (size_t)(hb / 2) * (size_t)(wb / 2);
                buffers--;
            }
        }
    }
    return buffers;
}

/* dst[k * plane + col] = src[col][k] for col < n, k < 64: blocks to frequency planes.
 *
 * Row u of 8 blocks side by side is an 8x8 int16 tile; its transpose is 16-byte runs into the 8 planes
 * k = 8u .. 8u+7. Row u outermost keeps 8 write streams going at a time: planes of a 1024x768 image lie
 * exactly 24 KiB apart, so the 64 streams of group-outermost order all fall into the same cache sets
 * (it ran 15% slower at that size). The scalar loop this replaces (a 2-byte load and store per
 * coefficient) cost 0.4-0.5 ms of a 2 ms call at 1024x768. */
static void blocks_to_planes(const JBLOCK *src, int n, JCOEF *dst, size_t plane) {
    int col = 0, k;
#ifdef __SSE2__
    int u, simd_cols = n - n % 8;
    for (u = 0; u < DCTSIZE; u++) {
        JCOEF *d = dst + (size_t)(DCTSIZE * u) * plane;
        for (col = 0; col < simd_cols; col += 8) {
            const JCOEF *b = src[col] + DCTSIZE * u;
            /* a_j: row u of block col + j, v = 0..7 */
            __m128i a0 = _mm_loadu_si128((const __m128i *)(b + 0 * DCTSIZE2));
            __m128i a1 = _mm_loadu_si128((const __m128i *)(b + 1 * DCTSIZE2));
            __m128i a2 = _mm_loadu_si128((const __m128i *)(b + 2 * DCTSIZE2));
            __m128i a3 = _mm_loadu_si128((const __m128i *)(b + 3 * DCTSIZE2));
            __m128i a4 = _mm_loadu_si128((const __m128i *)(b + 4 * DCTSIZE2));
            __m128i a5 = _mm_loadu_si128((const __m128i *)(b + 5 * DCTSIZE2));
            __m128i a6 = _mm_loadu_si128((const __m128i *)(b + 6 * DCTSIZE2));
            __m128i a7 = _mm_loadu_si128((const __m128i *)(b + 7 * DCTSIZE2));
            /* b01lo = a0[0] a1[0] a0[1] a1[1] a0[2] a1[2] a0[3] a1[3], b01hi the same for v = 4..7 */
            __m128i b01lo = _mm_unpacklo_epi16(a0, a1), b01hi = _mm_unpackhi_epi16(a0, a1);
            __m128i b23lo = _mm_unpacklo_epi16(a2, a3), b23hi = _mm_unpackhi_epi16(a2, a3);
            __m128i b45lo = _mm_unpacklo_epi16(a4, a5), b45hi = _mm_unpackhi_epi16(a4, a5);
            __m128i b67lo = _mm_unpacklo_epi16(a6, a7), b67hi = _mm_unpackhi_epi16(a6, a7);
            /* c0123_v = a0..a3 at v, then a0..a3 at v + 1 */
            __m128i c0123_0 = _mm_unpacklo_epi32(b01lo, b23lo), c0123_2 = _mm_unpackhi_epi32(b01lo, b23lo);
            __m128i c0123_4 = _mm_unpacklo_epi32(b01hi, b23hi), c0123_6 = _mm_unpackhi_epi32(b01hi, b23hi);
            __m128i c4567_0 = _mm_unpacklo_epi32(b45lo, b67lo), c4567_2 = _mm_unpackhi_epi32(b45lo, b67lo);
            __m128i c4567_4 = _mm_unpacklo_epi32(b45hi, b67hi), c4567_6 = _mm_unpackhi_epi32(b45hi, b67hi);
            /* a0..a7 at v, into plane 8u + v */
            _mm_storeu_si128((__m128i *)(d + 0 * plane + col), _mm_unpacklo_epi64(c0123_0, c4567_0));
            _mm_storeu_si128((__m128i *)(d + 1 * plane + col), _mm_unpackhi_epi64(c0123_0, c4567_0));
            _mm_storeu_si128((__m128i *)(d + 2 * plane + col), _mm_unpacklo_epi64(c0123_2, c4567_2));
            _mm_storeu_si128((__m128i *)(d + 3 * plane + col), _mm_unpackhi_epi64(c0123_2, c4567_2));
            _mm_storeu_si128((__m128i *)(d + 4 * plane + col), _mm_unpacklo_epi64(c0123_4, c4567_4));
            _mm_storeu_si128((__m128i *)(d + 5 * plane + col), _mm_unpackhi_epi64(c0123_4, c4567_4));
            _mm_storeu_si128((__m128i *)(d + 6 * plane + col), _mm_unpacklo_epi64(c0123_6, c4567_6));
            _mm_storeu_si128((__m128i *)(d + 7 * plane + col), _mm_unpackhi_epi64(c0123_6, c4567_6));
        }
    }
#endif
    if (col < n) {
        /* The last n % 8 blocks (every block without SSE2), frequency outermost so that each plane's run is
         * written in order while the source blocks stay in cache. */
        for (k = 0; k < DCTSIZE2; k++) {
            JCOEF *plane_row = dst + (size_t)k * plane;
            int c;
            for (c = col; c < n; c++) {
                plane_row[c] = src[c][k];
            }
        }
    }
}

/* Zero dst[k * plane + col] for col in [from, to), k < 64. */
static void zero_planes(JCOEF *dst, size_t plane, int from, int to) {
    int k;
    if (to <= from) {
        return;
    }
    for (k = 0; k < DCTSIZE2; k++) {
        memset(dst + (size_t)k * plane + from, 0, (size_t)(to - from) * sizeof(JCOEF));
    }
}

/* ---- The DCT-domain chroma map (4:4:4, 4:2:2 and 4:4:0 chroma onto the 4:2:0 grid) ----
 *
 * The same exact linear map as jpeg/chroma.py: dequantize, "IDCT, average pixel pairs, DCT" along each axis
 * that is averaged, re-quantize with the component's own table, round half away from zero. Along one axis,
 * averaging 16 source pixels down to 8 never mixes two source blocks into one output pixel, so source block
 * a (0: first, 1: second) maps through its own 8x8 matrix T[a] = D S_a D^T (chroma.py's PAIR_MAP); an axis
 * that is not averaged maps through the identity. axis_map[f - 1][a][u][p]: coefficient p of source block a
 * into output coefficient u, for f source blocks per output block along the axis. */
static double axis_map[2][2][DCTSIZE][DCTSIZE], axis_map_t[2][2][DCTSIZE][DCTSIZE];

/* Eight doubles: one row of an 8x8 block (GCC/clang vector extension; one zmm register with AVX-512, two
 * ymm with AVX2, four xmm otherwise). */
typedef double v8d __attribute__((vector_size(64)));
typedef long long v8l __attribute__((vector_size(64)));
typedef int v8i __attribute__((vector_size(32)));
typedef short v8s __attribute__((vector_size(16)));

/* axis_map_t[f - 1][a][p]: column p of axis_map[f - 1][a]; axis_vec the same as vectors over the output
 * index. */
static v8d axis_vec[2][2][DCTSIZE];

static void init_axis_maps(void) {
    double d[DCTSIZE][DCTSIZE];
    int a, u, p, x, i;
    for (u = 0; u < DCTSIZE; u++) {
        for (x = 0; x < DCTSIZE; x++) {
            d[u][x] = (u == 0 ? sqrt(1.0 / 8) : sqrt(2.0 / 8)) * cos((2 * x + 1) * u * M_PI / 16);
        }
    }
    memset(axis_map, 0, sizeof(axis_map));
    for (u = 0; u < DCTSIZE; u++) {
        axis_map[0][0][u][u] = 1.0;
    }
    for (a = 0; a < 2; a++) {
        for (u = 0; u < DCTSIZE; u++) {
            for (p = 0; p < DCTSIZE; p++) {
                double t = 0.0;
                for (i = 0; i < 4; i++) { /* output pixel 4a + i averages source pixels 2i, 2i + 1 of block a */
                    t += d[u][4 * a + i] * 0.5 * (d[p][2 * i] + d[p][2 * i + 1]);
                }
                axis_map[1][a][u][p] = t;
            }
        }
    }
    for (i = 0; i < 2; i++) {
        for (a = 0; a < 2; a++) {
            for (u = 0; u < DCTSIZE; u++) {
                for (p = 0; p < DCTSIZE; p++) {
                    axis_map_t[i][a][p][u] = axis_map[i][a][u][p];
                    axis_vec[i][a][p][u] = axis_map[i][a][u][p];
                }
            }
        }
    }
}

/* Blocks with more non-zero coefficients than this go through the separable product (1,024 multiply-adds)
 * instead of one 8x8 outer product per coefficient (64 each). */
#define MAP_SPARSE_MAX 16

/* Bit k set where blk[k] != 0. */
static inline __attribute__((always_inline)) unsigned long long nonzero_mask(const JCOEF *blk) {
    unsigned long long mask = 0;
    int i;
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128();
    for (i = 0; i < 4; i++) {
        __m128i lo = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(blk + 16 * i)), zero);
        __m128i hi = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(blk + 16 * i + 8)), zero);
        unsigned int zeros = (unsigned int)_mm_movemask_epi8(_mm_packs_epi16(lo, hi));
        mask |= (unsigned long long)(~zeros & 0xFFFFu) << (16 * i);
    }
#else
    for (i = 0; i < DCTSIZE2; i++) {
        mask |= (unsigned long long)(blk[i] != 0) << i;
    }
#endif
    return mask;
}

/* Round half away from zero after a nudge of 1e-9 away from zero, as chroma.py's map_round does: a value
 * that is mathematically a tie (a DC of (1 + 2) / 2, ...) comes out of either summation order a few ulps
 * to one side or the other, and rounds the same way in both. Clipped to int16. */
static inline __attribute__((always_inline)) JCOEF map_round(double x) {
    double a = fabs(x) + (0.5 + 1e-9);
    long r;
    if (a >= 32768.0) {
        return x < 0 ? -32768 : 32767;
    }
    r = (long)a; /* truncation is floor for a >= 0 */
    return (JCOEF)(x < 0 ? -r : r);
}

/* One output block of the map: acc[u] (over v) = sum over the source blocks (a, b) of Mv[a] X' Mh[b]^T with
 * X' = X * qt, then re-quantized by inv_q and rounded into `out`. src[a][b]: the source block, or NULL
 * (outside the image). A block with at most MAP_SPARSE_MAX non-zero coefficients adds one outer product
 * per coefficient (8 vector multiply-adds), a denser one goes through the separable product; all-zero
 * blocks cost one mask. Built for AVX-512, AVX2 and the baseline, picked at load time (target_clones). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
map_block(JCOEF *out, const JCOEF *src[2][2], int fv, int fh, int nv, int nh, const UINT16 *qt,
          const v8d *inv_q) {
    const v8d limit = {32768.0, 32768.0, 32768.0, 32768.0, 32768.0, 32768.0, 32768.0, 32768.0};
    /* The accumulator rows as eight named vectors, so that the compiler keeps them in registers. */
    v8d acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0}, acc4 = {0}, acc5 = {0}, acc6 = {0}, acc7 = {0};
    int a, b, p, q;
    for (a = 0; a < nv; a++) {
        for (b = 0; b < nh; b++) {
            const JCOEF *blk = src[a][b];
            unsigned long long mask;
            if (blk == NULL || (mask = nonzero_mask(blk)) == 0) {
                continue;
            }
            if (__builtin_popcountll(mask) <= MAP_SPARSE_MAX) {
                while (mask != 0) {
                    int c = __builtin_ctzll(mask);
                    const double *cu = axis_map_t[fv][a][c >> 3];
                    v8d cv = axis_vec[fh][b][c & 7] * ((double)blk[c] * (double)qt[c]);
                    mask &= mask - 1;
                    acc0 += cv * cu[0];
                    acc1 += cv * cu[1];
                    acc2 += cv * cu[2];
                    acc3 += cv * cu[3];
                    acc4 += cv * cu[4];
                    acc5 += cv * cu[5];
                    acc6 += cv * cu[6];
                    acc7 += cv * cu[7];
                }
            } else {
                for (p = 0; p < DCTSIZE; p++) {
                    const double *cu = axis_map_t[fv][a][p];
                    v8d t = {0}; /* sum_q X'[p][q] Mh[v][q], over v */
                    for (q = 0; q < DCTSIZE; q++) {
                        t += axis_vec[fh][b][q] * ((double)blk[DCTSIZE * p + q] * (double)qt[DCTSIZE * p + q]);
                    }
                    acc0 += t * cu[0];
                    acc1 += t * cu[1];
                    acc2 += t * cu[2];
                    acc3 += t * cu[3];
                    acc4 += t * cu[4];
                    acc5 += t * cu[5];
                    acc6 += t * cu[6];
                    acc7 += t * cu[7];
                }
            }
        }
    }
    /* map_round on eight values at once: the same operations in the same order, so the same integers. */
#define DCTQ_ROUND_ROW(u, row)                                                                                  \
    do {                                                                                                        \
        v8d x = (row) * inv_q[u];                                                                               \
        v8d a = (v8d)((v8l)x & 0x7FFFFFFFFFFFFFFFLL) + (0.5 + 1e-9); /* |x| + 0.5 + nudge */                   \
        v8l small = a < 32768.0;                                                                                \
        v8i r, neg = __builtin_convertvector((v8l)x < 0, v8i); /* -1 where the sign bit is set */               \
        v8s r16;                                                                                                \
        a = (v8d)(((v8l)a & small) | ((v8l)limit & ~small));                                                    \
        r = __builtin_convertvector(a, v8i); /* truncation: floor, as a >= 0 */                                  \
        r = (r ^ neg) - neg;                                                                                    \
        r += (v8i)(r == 32768); /* +32768 clips to 32767; -32768 stays */                                       \
        r16 = __builtin_convertvector(r, v8s);                                                                  \
        memcpy(out + DCTSIZE * (u), &r16, sizeof(r16));                                                         \
    } while (0)
    DCTQ_ROUND_ROW(0, acc0);
    DCTQ_ROUND_ROW(1, acc1);
    DCTQ_ROUND_ROW(2, acc2);
    DCTQ_ROUND_ROW(3, acc3);
    DCTQ_ROUND_ROW(4, acc4);
    DCTQ_ROUND_ROW(5, acc5);
    DCTQ_ROUND_ROW(6, acc6);
    DCTQ_ROUND_ROW(7, acc7);
#undef DCTQ_ROUND_ROW
}

/* One chroma component of the whole image mapped onto its [64, out_rows, out_cols] grid (map_h x map_v source
 * blocks per output block; blocks past the image's are zero), written by rows of out_cols blocks through the
 * same plane transpose as a copy. `qt` NULL (no table, or a zero step: reader.py refuses the file): zeros. */
static void map_component(reader *r, jvirt_barray_ptr array, const component_info *o, const UINT16 *qt,
                          JCOEF *out) {
    size_t plane = (size_t)o->out_rows * (size_t)o->out_cols;
    int fv = o->map_v - 1, fh = o->map_h - 1;
    JBLOCKROW row_out = (JBLOCKROW)(*r->cinfo.mem->alloc_large)((j_common_ptr)&r->cinfo, JPOOL_IMAGE,
                                                                 (size_t)o->out_cols * sizeof(JBLOCK));
    v8d inv_q[DCTSIZE];
    int row, col, a, b, k;
    for (k = 0; k < DCTSIZE2; k++) {
        inv_q[k / DCTSIZE][k % DCTSIZE] = qt != NULL ? 1.0 / (double)qt[k] : 0.0;
    }
    for (row = 0; row < o->out_rows; row++) {
        JBLOCKROW lines[2] = {NULL, NULL};
        for (a = 0; a < o->map_v; a++) {
            int src_row = o->map_v * row + a;
            if (qt != NULL && src_row < o->height_in_blocks) {
                lines[a] = (*r->cinfo.mem->access_virt_barray)((j_common_ptr)&r->cinfo, array, (JDIMENSION)src_row,
                                                              1, FALSE)[0];
            }
        }
        for (col = 0; col < o->out_cols; col++) {
            const JCOEF *src[2][2] = {{NULL, NULL}, {NULL, NULL}};
            for (a = 0; a < o->map_v; a++) {
                for (b = 0; b < o->map_h; b++) {
                    int src_col = o->map_h * col + b;
                    if (lines[a] != NULL && src_col < o->width_in_blocks) {
                        src[a][b] = lines[a][src_col];
                    }
                }
            }
            map_block(row_out[col], src, fv, fh, o->map_v, o->map_h, qt, inv_q);
        }
        blocks_to_planes((const JBLOCK *)row_out, o->out_cols, out + (size_t)row * (size_t)o->out_cols, plane);
    }
}

/* The quant table a component's data used: the one latched when its first scan began, else the slot's. */
static JQUANT_TBL *component_table(reader *r, jpeg_component_info *c) {
    JQUANT_TBL *t = c->quant_table;
    if (t == NULL && c->quant_tbl_no >= 0 && c->quant_tbl_no < NUM_QUANT_TBLS) {
        t = r->cinfo.quant_tbl_ptrs[c->quant_tbl_no];
    }
    return t;
}

/* Phase 2: entropy-decode every scan, copy each component's blocks to its output grid as [64, rows, cols]
 * int16 (one plane per frequency, the layout the coefficient contract uses, so Python only reshapes),
 * writing zeros where the grid reaches past the blocks inside the image. */
static int decode_arrays(reader *r) {
    if (setjmp(r->err.jmp)) {
        return 0;
    }
    r->arrays = jpeg_read_coefficients(&r->cinfo);
    return 1;
}

/* Phase 3, after decode_arrays and the allocation of the output buffers (sized for the frame only now
 * known): copy (or map) each component's blocks out of libjpeg's arrays. */
static int read_blocks(reader *r, char **buffers) {
    int ci, row, k;
    jvirt_barray_ptr *arrays = r->arrays;
    if (setjmp(r->err.jmp)) {
        return 0;
    }
    r->has_qt = 1;
    for (ci = 0; ci < r->cinfo.num_components; ci++) {
        jpeg_component_info *c = &r->cinfo.comp_info[ci];
        component_info *o = &r->comps[ci];
        JCOEF *out = (JCOEF *)buffers[o->out_buffer] + o->out_offset;
        size_t plane = (size_t)o->out_rows * (size_t)o->out_cols;
        /* Source blocks [r0, r1) x [c0, c1) land at output row - src_top, column - src_left. */
        int r0 = o->src_top > 0 ? o->src_top : 0, c0 = o->src_left > 0 ? o->src_left : 0;
        int r1 = o->src_top + o->out_rows < o->height_in_blocks ? o->src_top + o->out_rows : o->height_in_blocks;
        int c1 = o->src_left + o->out_cols < o->width_in_blocks ? o->src_left + o->out_cols : o->width_in_blocks;
        JQUANT_TBL *t = component_table(r, c);
        if (c1 <= c0) {
            r1 = r0; /* no column of the window inside the image */
        }
        if (t == NULL) {
            r->has_qt = 0;
        }
        for (k = 0; k < DCTSIZE2; k++) {
            r->qt[ci][k] = t != NULL ? (unsigned short)t->quantval[k] : 0;
        }
        if (o->map_h * o->map_v > 1) {
            int usable = t != NULL;
            for (k = 0; k < DCTSIZE2 && usable; k++) {
                usable = t->quantval[k] != 0;
            }
            map_component(r, arrays[ci], o, usable ? t->quantval : NULL, out);
            continue;
        }
        for (row = 0; row < o->out_rows; row++) {
            int src_row = row + o->src_top;
            JCOEF *dst = out + (size_t)row * (size_t)o->out_cols;
            if (src_row >= r0 && src_row < r1) {
                JBLOCKARRAY line = (*r->cinfo.mem->access_virt_barray)((j_common_ptr)&r->cinfo, arrays[ci],
                                                                       (JDIMENSION)src_row, 1, FALSE);
                zero_planes(dst, plane, 0, c0 - o->src_left);
                blocks_to_planes((const JBLOCK *)line[0] + c0, c1 - c0, dst + (c0 - o->src_left), plane);
                zero_planes(dst, plane, c1 - o->src_left, o->out_cols);
            } else {
                for (k = 0; k < DCTSIZE2; k++) {
                    memset(dst + (size_t)k * plane, 0, (size_t)o->out_cols * sizeof(JCOEF));
                }
            }
        }
    }
    jpeg_finish_decompress(&r->cinfo);
    return 1;
}

/* The IDCT of stream_window: instead of turning a block into pixels, copy its quantized coefficients
 * (natural order, as the entropy decoder left them) into the window when the block lies inside it. */
static void capture_block(j_decompress_ptr cinfo, jpeg_component_info *compptr, JCOEFPTR coef_block,
                          JSAMPARRAY output_buf, JDIMENSION output_col) {
    reader *r = (reader *)cinfo;
    int ci = compptr->component_index, k;
    const component_info *o = &r->comps[ci];
    long row = (long)cinfo->output_iMCU_row * compptr->v_samp_factor +
               (long)(output_buf - r->raw_rows[ci]) / DCTSIZE - o->src_top;
    long col = (long)output_col / DCTSIZE - o->src_left;
    size_t plane = (size_t)o->out_rows * (size_t)o->out_cols;
    JCOEF *out;
    if (row < 0 || row >= o->out_rows || col < 0 || col >= o->out_cols) {
        return;
    }
    out = (JCOEF *)r->buffers[o->out_buffer] + o->out_offset + (size_t)row * (size_t)o->out_cols + (size_t)col;
    for (k = 0; k < DCTSIZE2; k++) {
        out[(size_t)k * plane] = coef_block[k];
    }
}

/* Whether stream_window can read this frame: one interleaved baseline/sequential scan (a progressive or
 * multi-scan file needs the whole coefficient buffer, which read_blocks keeps). After read_header. */
static int can_stream(reader *r) {
    return !r->cinfo.progressive_mode && !jpeg_has_multiple_scans(&r->cinfo);
}

/* Phase 2 for a window of a single-scan file: decode MCU row by MCU row in raw-data mode with the IDCT
 * replaced by capture_block, so libjpeg holds one MCU row, never the whole image's coefficients (a
 * 16384x16384 file: 768 MB with read_blocks). Same blocks, tables and warnings as read_blocks. */
static int stream_window(reader *r, char **buffers) {
    struct jpeg_decompress_struct *cinfo = &r->cinfo;
    JSAMPARRAY planes[MAX_COMPONENTS];
    int ci, row, k;
    if (setjmp(r->err.jmp)) {
        return 0;
    }
    r->buffers = buffers;
    for (ci = 0; ci < cinfo->num_components; ci++) {
        const component_info *o = &r->comps[ci];
        JCOEF *out = (JCOEF *)buffers[o->out_buffer] + o->out_offset;
        memset(out, 0, (size_t)DCTSIZE2 * (size_t)o->out_rows * (size_t)o->out_cols * sizeof(JCOEF));
        for (row = 0; row < MAX_SAMP_FACTOR * DCTSIZE; row++) {
            r->raw_rows[ci][row] = r->dummy_row;
        }
        planes[ci] = r->raw_rows[ci];
    }
    cinfo->raw_data_out = TRUE;
    cinfo->do_fancy_upsampling = FALSE;
    jpeg_start_decompress(cinfo);
    for (ci = 0; ci < cinfo->num_components; ci++) {
        cinfo->idct->inverse_DCT[ci] = capture_block;
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        if (jpeg_read_raw_data(cinfo, planes, (JDIMENSION)(cinfo->max_v_samp_factor * DCTSIZE)) == 0) {
            break; /* a memory source never suspends; libjpeg warned about the missing data */
        }
    }
    r->has_qt = 1;
    for (ci = 0; ci < cinfo->num_components; ci++) {
        JQUANT_TBL *t = cinfo->comp_info[ci].quant_table;
        if (t == NULL) {
            r->has_qt = 0;
        }
        for (k = 0; k < DCTSIZE2; k++) {
            r->qt[ci][k] = t != NULL ? (unsigned short)t->quantval[k] : 0;
        }
    }
    jpeg_finish_decompress(cinfo);
    return 1;
}

static PyObject *TurboError; /* args: (kind, message, warnings) */

/* [(kind, message)] for the warnings recorded so far. */
static PyObject *warning_list(reader *r) {
    PyObject *warnings = PyList_New(0);
    int i;
    if (warnings == NULL) {
        return NULL;
    }
    for (i = 0; i < r->err.num_warnings && i < MAX_WARNINGS; i++) {
        PyObject *w = Py_BuildValue("(ss)", warning_kind(r->err.warning_codes[i]), r->err.warning_msgs[i]);
        if (w == NULL || PyList_Append(warnings, w) < 0) {
            Py_XDECREF(w);
            Py_DECREF(warnings);
            return NULL;
        }
        Py_DECREF(w);
    }
    return warnings;
}

/* The warnings go along: a file cut inside a segment header shows as an error after JWRN_JPEG_EOF. */
static PyObject *raise_libjpeg_error(reader *r) {
    PyObject *warnings = warning_list(r);
    PyObject *args;
    if (warnings == NULL) {
        return NULL;
    }
    args = Py_BuildValue("(ssN)", error_kind(r->err.error_code), r->err.error_msg, warnings);
    if (args != NULL) {
        PyErr_SetObject(TurboError, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* The result tuple; see the docstring in `methods`. */
static PyObject *build_result(reader *r, PyObject **buffers, int nbuffers) {
    struct jpeg_decompress_struct *ci = &r->cinfo;
    PyObject *sampling = NULL, *arrays = NULL, *qt = NULL, *warnings = NULL;
    int i, n = ci->num_components;
    sampling = PyTuple_New(n);
    arrays = PyTuple_New(nbuffers);
    warnings = warning_list(r);
    if (sampling == NULL || arrays == NULL || warnings == NULL) {
        goto fail;
    }
    for (i = 0; i < n; i++) {
        PyObject *hv = Py_BuildValue("(ii)", r->comps[i].h_samp, r->comps[i].v_samp);
        if (hv == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(sampling, i, hv);
    }
    for (i = 0; i < nbuffers; i++) {
        /* A buffer holds one component, or Cb then Cr on the same grid. */
        int first = -1, count = 0, c;
        PyObject *entry;
        for (c = 0; c < n; c++) {
            if (r->comps[c].out_buffer == i) {
                first = first < 0 ? c : first;
                count++;
            }
        }
        entry = Py_BuildValue("(Oiii)", buffers[i], DCTSIZE2 * count, r->comps[first].out_rows,
                              r->comps[first].out_cols);
        if (entry == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(arrays, i, entry);
    }
    if (r->has_qt) {
        /* bytearray, so that the numpy view of it is writable like the coefficient arrays. */
        qt = PyByteArray_FromStringAndSize((const char *)r->qt,
                                           (Py_ssize_t)n * DCTSIZE2 * (Py_ssize_t)sizeof(unsigned short));
        if (qt == NULL) {
            goto fail;
        }
    } else {
        qt = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(iiOOiiNNNN)", (int)ci->image_height, (int)ci->image_width,
                         ci->progressive_mode ? Py_True : Py_False, ci->arith_code ? Py_True : Py_False,
                         (int)ci->jpeg_color_space, ci->data_precision, sampling, qt, arrays, warnings);
fail:
    Py_XDECREF(sampling);
    Py_XDECREF(arrays);
    Py_XDECREF(qt);
    Py_XDECREF(warnings);
    return NULL;
}

static PyObject *read_coefficients(PyObject *self, PyObject *args) {
    Py_buffer buf;
    long max_memory = 0;
    int grid = 0;
    PyObject *window_arg = Py_None;
    window win = {0, 0, 0, 0, 0};
    reader *r;
    PyObject *buffers[MAX_COMPONENTS] = {NULL};
    char *out[MAX_COMPONENTS] = {NULL};
    Py_ssize_t sizes[MAX_COMPONENTS] = {0};
    PyObject *result = NULL;
    int ok, i, n = 0, nbuffers = 0, streamed = 0;
    (void)self;

    /* y*: any contiguous buffer; the buffer stays exported (so cannot be resized) while the GIL is released. */
    if (!PyArg_ParseTuple(args, "y*|lpO:read_coefficients", &buf, &max_memory, &grid, &window_arg)) {
        return NULL;
    }
    if (window_arg != Py_None) {
        if (!PyTuple_Check(window_arg)) {
            PyBuffer_Release(&buf);
            PyErr_SetString(PyExc_TypeError, "window must be a tuple (top, left, rows, cols) or None");
            return NULL;
        }
        if (!PyArg_ParseTuple(window_arg, "iiii;window must be (top, left, rows, cols)", &win.top, &win.left,
                              &win.rows, &win.cols)) {
            PyBuffer_Release(&buf);
            return NULL;
        }
        if (win.rows <= 0 || win.cols <= 0 || (win.top | win.left | win.rows | win.cols) & 1 ||
            win.rows > (1 << 14) || win.cols > (1 << 14)) {
            PyBuffer_Release(&buf);
            PyErr_SetString(PyExc_ValueError, "window rows/cols must be positive, at most 16384, and all even");
            return NULL;
        }
        win.used = 1;
    }
    r = (reader *)PyMem_Calloc(1, sizeof(reader));
    if (r == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    r->cinfo.err = jpeg_std_error(&r->err.pub);
    r->err.pub.error_exit = dctq_error_exit;
    r->err.pub.emit_message = dctq_emit_message;
    r->err.pub.output_message = dctq_output_message;

    Py_BEGIN_ALLOW_THREADS
    ok = read_header(r, (const unsigned char *)buf.buf, (size_t)buf.len, max_memory);
    Py_END_ALLOW_THREADS
    if (!ok) {
        raise_libjpeg_error(r);
        goto done;
    }
    n = r->cinfo.num_components;
    if (n < 1 || n > MAX_COMPONENTS) {
        PyObject *err_args = Py_BuildValue("(ss[])", "unsupported", "bad number of components");
        if (err_args != NULL) {
            PyErr_SetObject(TurboError, err_args);
            Py_DECREF(err_args);
        }
        goto done;
    }
    if (win.used && !(n == 1 || is_420(r))) {
        /* Other chroma layouts are mapped to 4:2:0 in Python from the whole planes. */
        PyErr_SetString(PyExc_ValueError, "a window needs a grayscale or 4:2:0 frame");
        goto done;
    }
    nbuffers = plan_output(r, grid, &win);
    streamed = win.used && can_stream(r);
    if (!streamed) {
        /* Entropy-decode first, then allocate the output: an error in the data allocates nothing. */
        Py_BEGIN_ALLOW_THREADS
        ok = decode_arrays(r);
        Py_END_ALLOW_THREADS
        if (!ok) {
            raise_libjpeg_error(r);
            goto done;
        }
    }
    for (i = 0; i < n; i++) {
        component_info *o = &r->comps[i];
        sizes[o->out_buffer] += (Py_ssize_t)o->out_rows * o->out_cols * DCTSIZE2 * (Py_ssize_t)sizeof(JCOEF);
    }
    for (i = 0; i < nbuffers; i++) {
        /* Every byte is written in read_blocks, so no zero-fill here. bytearray, so that numpy views of it
         * are writable (torch.from_numpy warns on read-only ones). */
        buffers[i] = PyByteArray_FromStringAndSize(NULL, sizes[i]);
        if (buffers[i] == NULL) {
            goto done;
        }
        out[i] = PyByteArray_AS_STRING(buffers[i]);
    }

    Py_BEGIN_ALLOW_THREADS
    ok = streamed ? stream_window(r, out) : read_blocks(r, out);
    Py_END_ALLOW_THREADS
    if (!ok) {
        raise_libjpeg_error(r);
        goto done;
    }
    result = build_result(r, buffers, nbuffers);

done:
    for (i = 0; i < MAX_COMPONENTS; i++) {
        Py_XDECREF(buffers[i]);
    }
    if (r->created) {
        jpeg_destroy_decompress(&r->cinfo);
    }
    PyMem_Free(r);
    PyBuffer_Release(&buf);
    return result;
}

/* entropy_decode(data): libjpeg's jpeg_read_coefficients alone (header, every scan's Huffman decoding into
 * its own whole-image block arrays), nothing copied out; for bench/jpeg_read.py, the floor under any
 * coefficient reader built on libjpeg. Errors as read_coefficients; warnings are ignored. */
static int entropy_only(reader *r) {
    if (setjmp(r->err.jmp)) {
        return 0;
    }
    jpeg_read_coefficients(&r->cinfo);
    jpeg_finish_decompress(&r->cinfo);
    return 1;
}

static PyObject *entropy_decode(PyObject *self, PyObject *args) {
    Py_buffer buf;
    reader *r;
    int ok;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*:entropy_decode", &buf)) {
        return NULL;
    }
    r = (reader *)PyMem_Calloc(1, sizeof(reader));
    if (r == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    r->cinfo.err = jpeg_std_error(&r->err.pub);
    r->err.pub.error_exit = dctq_error_exit;
    r->err.pub.emit_message = dctq_emit_message;
    r->err.pub.output_message = dctq_output_message;
    Py_BEGIN_ALLOW_THREADS
    ok = read_header(r, (const unsigned char *)buf.buf, (size_t)buf.len, 0) && entropy_only(r);
    Py_END_ALLOW_THREADS
    if (!ok) {
        raise_libjpeg_error(r);
    }
    if (r->created) {
        jpeg_destroy_decompress(&r->cinfo);
    }
    PyMem_Free(r);
    PyBuffer_Release(&buf);
    if (!ok) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read_coefficients", read_coefficients, METH_VARARGS,
     "read_coefficients(data, max_memory=0, grid=False, window=None) -> tuple\n\n"
     "Quantized DCT coefficients of the JPEG in `data` (bytes-like), as the tuple\n"
     "(height, width, progressive, arith_code, jpeg_color_space, data_precision, sampling, qt, arrays,\n"
     "warnings): sampling is ((h, v), ...) per component; qt a bytearray of uint16 [components, 64]\n"
     "(natural order), or None when a component has no table; arrays ((buffer, channels, rows, cols), ...)\n"
     "where each buffer is a bytearray of int16 [channels, rows, cols], channel k = 8*u + v; warnings\n"
     "[(kind, message)], kind one of 'truncated', 'corrupt', 'benign'.\n"
     "grid=False: one array per component, its blocks inside the image ([64, height_in_blocks,\n"
     "width_in_blocks]). grid=True: the first component on the luma grid of the 4:2:0 coefficient contract,\n"
     "[64, 2*ceil(H/16), 2*ceil(W/16)], and for a 4:2:0 frame Cb and Cr together as [128, Hb/2, Wb/2];\n"
     "blocks past those inside the image are zero (MCU padding dropped); 4:4:4, 4:2:2 and 4:4:0 chroma (Cb and Cr\n"
     "sampled alike, luma once or twice as finely each way) is mapped onto that [128, Hb/2, Wb/2] grid in the DCT\n"
     "domain exactly as jpeg/chroma.py maps it; other chroma as with grid=False.\n"
     "window=(top, left, rows, cols), all even, with grid=True on a grayscale or 4:2:0 frame: only that window of\n"
     "the luma grid ([64, rows, cols], starting at block (top, left); negative or past the image: zeros) and its\n"
     "half of the chroma grid are written, so a crop never allocates the whole image's output.\n"
     "max_memory bounds libjpeg's allocations (0: no bound). Raises _turbo.Error(kind, message,\n"
     "warnings), kind one of 'not_jpeg', 'unsupported', 'too_large', 'corrupt'."},
    {"entropy_decode", entropy_decode, METH_VARARGS,
     "entropy_decode(data) -> None\n\nDiagnostic for benchmarks: libjpeg's jpeg_read_coefficients alone (every scan\n"
     "entropy-decoded into libjpeg's own block arrays), nothing copied out. Raises _turbo.Error like\n"
     "read_coefficients."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_turbo", "libjpeg-turbo coefficient reader for dctq.jpeg.reader.", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* glibc's malloc returns freed memory at the top of the heap to the system once it exceeds its trim
 * threshold, which starts at 256 KiB and rises only when a chunk larger than the mmap threshold (128 KiB
 * at first) is freed: threshold := that size, trim threshold := twice it. One read frees libjpeg's
 * whole-image arrays and, later, the caller frees the output: at 1024x768 ~4.7 MB together, above the trim
 * threshold that reads of that size leave (~3 MB), so every read gave the memory back and faulted it in
 * again: ~1,000 page faults, 1.5-2.5 ms of a 5 ms read (simplejpeg, one 2.3 MB output, none). Freeing
 * one untouched 16 MiB block at import raises the thresholds to 16 and 32 MiB, as the first 16 MiB array
 * any numpy or torch program frees does; it changes nothing where MALLOC_*_ environment settings have
 * fixed them. */
static void raise_malloc_thresholds(void) {
#ifdef __GLIBC__
    void *volatile block = malloc((size_t)16 << 20);
    free(block);
#endif
}

PyMODINIT_FUNC PyInit__turbo(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    TurboError = PyErr_NewException("dctq.jpeg._turbo.Error", NULL, NULL);
    if (TurboError == NULL || PyModule_AddObject(m, "Error", TurboError) < 0) {
        Py_XDECREF(TurboError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(TurboError);
    init_axis_maps();
    raise_malloc_thresholds();
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
    if (PyModule_AddIntConstant(m, "LIBJPEG_TURBO_VERSION_NUMBER", LIBJPEG_TURBO_VERSION_NUMBER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    if (PyModule_AddIntConstant(m, "JPEG_LIB_VERSION", JPEG_LIB_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "BITS_IN_JSAMPLE", BITS_IN_JSAMPLE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* dctq.jpeg._turbo: quantized DCT coefficients of a JPEG held in memory, via libjpeg-turbo.
 *
 * One function, read_coefficients(data, max_memory), wraps jpeg_read_coefficients() over jpeg_mem_src().
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

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

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
    int rows, cols; /* allocated virtual array: whole MCUs */
    int has_qt;
    unsigned short qt[DCTSIZE2];
} component_info;

/* State shared by the two GIL-free phases of one read. */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    dctq_error_mgr err;
    int created;
    component_info comps[MAX_COMPONENTS];
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
        /* Same rounding as jdcoefct.c's request_virt_barray: the array covers whole MCUs. */
        o->rows = (int)((c->height_in_blocks + c->v_samp_factor - 1) / c->v_samp_factor) * c->v_samp_factor;
        o->cols = (int)((c->width_in_blocks + c->h_samp_factor - 1) / c->h_samp_factor) * c->h_samp_factor;
    }
    return 1;
}

/* Phase 2: entropy-decode every scan, copy each component's blocks to out[ci] as [64, rows, cols] int16:
 * one plane per frequency, the layout the coefficient contract uses, so Python only reshapes. */
static int read_blocks(reader *r, JCOEF **out) {
    int ci, row, col, k;
    jvirt_barray_ptr *arrays;
    if (setjmp(r->err.jmp)) {
        return 0;
    }
    arrays = jpeg_read_coefficients(&r->cinfo);
    for (ci = 0; ci < r->cinfo.num_components; ci++) {
        jpeg_component_info *c = &r->cinfo.comp_info[ci];
        component_info *o = &r->comps[ci];
        size_t plane = (size_t)o->rows * (size_t)o->cols;
        for (row = 0; row < o->rows; row++) {
            JBLOCKARRAY line =
                (*r->cinfo.mem->access_virt_barray)((j_common_ptr)&r->cinfo, arrays[ci], (JDIMENSION)row, 1, FALSE);
            JCOEF *dst = out[ci] + (size_t)row * (size_t)o->cols;
            /* Frequency outermost: each plane's row is written in order while the source block row (a few
             * KiB) stays in cache; block-outermost scatters over 64 planes and ran twice as slow. */
            for (k = 0; k < DCTSIZE2; k++) {
                JCOEF *plane_row = dst + (size_t)k * plane;
                for (col = 0; col < o->cols; col++) {
                    plane_row[col] = line[0][col][k];
                }
            }
        }
        /* The table latched when the component's first scan began is the one its data used. */
        {
            JQUANT_TBL *t = c->quant_table;
            if (t == NULL && c->quant_tbl_no >= 0 && c->quant_tbl_no < NUM_QUANT_TBLS) {
                t = r->cinfo.quant_tbl_ptrs[c->quant_tbl_no];
            }
            o->has_qt = t != NULL;
            for (k = 0; k < DCTSIZE2; k++) {
                o->qt[k] = t != NULL ? (unsigned short)t->quantval[k] : 0;
            }
        }
    }
    jpeg_finish_decompress(&r->cinfo);
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

static PyObject *build_result(reader *r, PyObject **blocks) {
    struct jpeg_decompress_struct *ci = &r->cinfo;
    PyObject *comps = NULL, *warnings = NULL, *result = NULL;
    int i;
    comps = PyList_New(0);
    warnings = warning_list(r);
    if (comps == NULL || warnings == NULL) {
        goto done;
    }
    for (i = 0; i < ci->num_components; i++) {
        component_info *o = &r->comps[i];
        PyObject *d = Py_BuildValue(
            "{s:i,s:i,s:i,s:i,s:i,s:i,s:O,s:O}", "h", o->h_samp, "v", o->v_samp, "rows", o->rows, "cols", o->cols,
            "height_in_blocks", o->height_in_blocks, "width_in_blocks", o->width_in_blocks, "coefficients",
            blocks[i], "qt", Py_None);
        if (d == NULL) {
            goto done;
        }
        if (o->has_qt) {
            PyObject *qt = PyBytes_FromStringAndSize((const char *)o->qt, sizeof(o->qt));
            if (qt == NULL || PyDict_SetItemString(d, "qt", qt) < 0) {
                Py_XDECREF(qt);
                Py_DECREF(d);
                goto done;
            }
            Py_DECREF(qt);
        }
        if (PyList_Append(comps, d) < 0) {
            Py_DECREF(d);
            goto done;
        }
        Py_DECREF(d);
    }
    result = Py_BuildValue(
        "{s:i,s:i,s:O,s:O,s:i,s:i,s:i,s:O,s:O}", "height", (int)ci->image_height, "width", (int)ci->image_width,
        "progressive", ci->progressive_mode ? Py_True : Py_False, "arith_code", ci->arith_code ? Py_True : Py_False,
        "jpeg_color_space", (int)ci->jpeg_color_space, "data_precision", ci->data_precision, "num_warnings",
        r->err.num_warnings, "components", comps, "warnings", warnings);
done:
    Py_XDECREF(comps);
    Py_XDECREF(warnings);
    return result;
}

static PyObject *read_coefficients(PyObject *self, PyObject *args) {
    Py_buffer buf;
    long max_memory = 0;
    reader *r;
    PyObject *blocks[MAX_COMPONENTS] = {NULL};
    JCOEF *out[MAX_COMPONENTS] = {NULL};
    PyObject *result = NULL;
    int ok, i, n = 0;
    (void)self;

    /* y*: any contiguous buffer; the buffer stays exported (so cannot be resized) while the GIL is released. */
    if (!PyArg_ParseTuple(args, "y*|l:read_coefficients", &buf, &max_memory)) {
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
    for (i = 0; i < n; i++) {
        Py_ssize_t nbytes = (Py_ssize_t)r->comps[i].rows * r->comps[i].cols * DCTSIZE2 * (Py_ssize_t)sizeof(JCOEF);
        /* bytearray, so that numpy views of it are writable (torch.from_numpy warns on read-only ones). */
        blocks[i] = PyByteArray_FromStringAndSize(NULL, nbytes);
        if (blocks[i] == NULL) {
            goto done;
        }
        out[i] = (JCOEF *)PyByteArray_AS_STRING(blocks[i]);
    }

    Py_BEGIN_ALLOW_THREADS
    ok = read_blocks(r, out);
    Py_END_ALLOW_THREADS
    if (!ok) {
        raise_libjpeg_error(r);
        goto done;
    }
    result = build_result(r, blocks);

done:
    for (i = 0; i < MAX_COMPONENTS; i++) {
        Py_XDECREF(blocks[i]);
    }
    if (r->created) {
        jpeg_destroy_decompress(&r->cinfo);
    }
    PyMem_Free(r);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"read_coefficients", read_coefficients, METH_VARARGS,
     "read_coefficients(data, max_memory=0) -> dict\n\n"
     "Quantized DCT coefficients of the JPEG in `data` (bytes-like). Each component's 'coefficients' are\n"
     "a bytearray of int16 [64, rows, cols] (k = 8*u + v; rows, cols cover whole MCUs); 'qt' is bytes of\n"
     "uint16 [64] (natural order) or None. 'warnings' lists (kind, message), kind one of 'truncated',\n"
     "'corrupt', 'benign'. max_memory bounds libjpeg's allocations (0: no bound). Raises\n"
     "_turbo.Error(kind, message, warnings), kind one of 'not_jpeg', 'unsupported', 'too_large', 'corrupt'."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_turbo", "libjpeg-turbo coefficient reader for dctq.jpeg.reader.", -1, methods,
    NULL, NULL, NULL, NULL,
};

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

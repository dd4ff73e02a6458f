/* The tumbling window operator's per-record loop over its panes, compiled: the optional C version
 * of the common case of WindowOperator._pane_run (actorflow/operators/windows/operator.py, the
 * reference; a hypothesis test checks that both do the same). Built by setup.py when a compiler
 * is present; operator.py runs the Python loop alone when this module is missing, stale, or
 * ACTORFLOW_PURE_PYTHON is set.
 *
 * run(values, timestamps, start, end, key_of, create, add, empty, panes, size, offset, highest)
 *     -> position
 *     For each record from `start` (values and timestamps lists, size and offset exact ints,
 *     size > 0, highest an exact int): while its timestamp is an exact int whose window (of
 *     max timestamp `time`) is after `highest` and has a pane in `panes` ({time: {key: contents}}),
 *     the record joins its key's contents there, as _pane_run does: contents = pane.get(key,
 *     empty); pane[key] = add(value, create()) if contents is empty, else pane[key] =
 *     add(value, contents) unless that returns contents itself. Returns `end`, or the position of
 *     the first record that needs the rules of the Python loop (its timestamp is not an exact
 *     int that fits 64 bits, its window is perhaps late, or opens a new pane). That record's key
 *     is not taken yet: key_of is called after the timestamp is read, as the Python loop calls it
 *     before anything with a side effect, so the caller can run the record in Python.
 *
 * Deciding to hand a record back calls no user code (integer arithmetic and a dict lookup by an
 * int), so the records run in the same order with the same calls as in the Python loop. An
 * exception from key_of, create, add, or a key's hash or comparison stops the loop at once and
 * propagates, the panes left as the Python loop leaves them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../../_kernel.h"

/* Bumped with every change of meaning: operator.py uses the module only when it agrees. */
#define PANE_RUN_VERSION 1

/* `callable(args...)`, unwrapping a bound method (the aggregate function's add) into its
 * function and self as the method's own call would, without its step. args[-1] must be
 * writable (PY_VECTORCALL_ARGUMENTS_OFFSET). */
static inline PyObject *
call(PyObject *function, PyObject *self, PyObject *callable, PyObject **args, size_t nargs)
{
    if (self != NULL) {
        PyObject *old = args[-1];
        args[-1] = self;
        PyObject *result = PyObject_Vectorcall(function, args - 1, nargs + 1, NULL);
        args[-1] = old;
        return result;
    }
    return PyObject_Vectorcall(callable, args, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* An exact int that fits 64 bits, into *out: 1 if so, 0 if not (nothing raised). */
static inline int
as_int64(PyObject *number, long long *out)
{
    if (!PyLong_CheckExact(number)) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000 && PYLONG_BITS_IN_DIGIT == 30
    /* A millisecond timestamp has two 30-bit digits: read them here rather than through the
     * general conversion's loop (3.11's layout: a signed digit count, then the digits). */
    Py_ssize_t digits = Py_SIZE(number);
    if (-2 <= digits && digits <= 2) {
        const digit *digit = ((PyLongObject *)number)->ob_digit;
        long long magnitude = 0;
        switch (digits < 0 ? -digits : digits) {
        case 2:
            magnitude = (long long)digit[1] << PyLong_SHIFT;
            /* fall through */
        case 1:
            magnitude |= digit[0];
        }
        *out = digits < 0 ? -magnitude : magnitude;
        return 1;
    }
#endif
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (overflow || (value == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = value;
    return 1;
}

/* The max timestamp of the window of `timestamp`, as the Python loop computes it:
 * timestamp - (timestamp - offset) % size + size - 1 (a floor modulo; size > 0), and the
 * window's first timestamp. 0 if they do not fit 64 bits (then the Python loop computes them
 * with its ints). */
static inline int
window_time(long long timestamp, long long size, long long offset, long long *first,
            long long *time)
{
    long long shifted, rest, base, result;
    if (__builtin_sub_overflow(timestamp, offset, &shifted)) {
        return 0;
    }
    rest = shifted % size;
    if (rest < 0) {
        rest += size; /* Python's modulo takes the sign of the divisor */
    }
    if (__builtin_sub_overflow(timestamp, rest, &base) ||
        __builtin_add_overflow(base, size - 1, &result)) {
        return 0;
    }
    *first = base; /* time - size + 1 */
    *time = result;
    return 1;
}

static PyObject *
run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "run(values, timestamps, start, end, key_of, create, add, empty, panes, "
                        "size, offset, highest) takes 12 arguments");
        return NULL;
    }
    PyObject *values = args[0], *timestamps = args[1], *key_of = args[4], *create = args[5],
             *add = args[6], *empty = args[7], *panes = args[8];
    if (!PyList_CheckExact(values) || !PyList_CheckExact(timestamps) || !PyDict_CheckExact(panes)) {
        PyErr_SetString(PyExc_TypeError, "run needs lists of values and timestamps, a dict of panes");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t end = PyLong_AsSsize_t(args[3]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long size, offset, highest;
    if (!as_int64(args[9], &size) || size <= 0 || !as_int64(args[10], &offset) ||
        !as_int64(args[11], &highest)) {
        PyErr_SetString(PyExc_ValueError, "run needs a size > 0, an offset and highest as 64-bit ints");
        return NULL;
    }
    PyObject *item = itemgetter_item(key_of);
    PyObject *add_function = add, *add_self = NULL;
    if (PyMethod_Check(add)) {
        add_function = PyMethod_GET_FUNCTION(add);
        add_self = PyMethod_GET_SELF(add);
    }
    PyObject *create_function = create, *create_self = NULL;
    if (PyMethod_Check(create)) {
        create_function = PyMethod_GET_FUNCTION(create);
        create_self = PyMethod_GET_SELF(create);
    }
    /* The window of the last record, by its first and last timestamp, and its pane (owned: a
     * user's add may drop it from `panes`); none yet. */
    long long first = 1, last = 0;
    PyObject *pane = NULL;
    Py_ssize_t i = start;
    for (; i < end; i++) {
        /* Counts are read where they are used: a list the user's code shortens ends the loop
         * (the Python loop then takes over, and its slices end there too). */
        if (i >= PyList_GET_SIZE(values) || i >= PyList_GET_SIZE(timestamps)) {
            break;
        }
        long long timestamp;
        if (!as_int64(PyList_GET_ITEM(timestamps, i), &timestamp)) {
            break; /* a float, a big int, anything else: the Python loop's arithmetic */
        }
        if (timestamp > last || timestamp < first) { /* another window than the last record's */
            long long start_time, time;
            if (!window_time(timestamp, size, offset, &start_time, &time) || time <= highest) {
                break; /* perhaps late: the Python loop's rules */
            }
            PyObject *boxed = PyLong_FromLongLong(time);
            if (boxed == NULL) {
                goto fail;
            }
            PyObject *found = PyDict_GetItemWithError(panes, boxed); /* borrowed; an int's lookup */
            Py_DECREF(boxed);
            if (found == NULL) {
                if (PyErr_Occurred()) {
                    goto fail;
                }
                break; /* a new pane, and its timer: the Python loop's rules */
            }
            if (!PyDict_CheckExact(found)) {
                break;
            }
            Py_XSETREF(pane, Py_NewRef(found));
            first = start_time;
            last = time;
        }
        PyObject *value = Py_NewRef(PyList_GET_ITEM(values, i));
        PyObject *key = item == NULL ? PyObject_CallOneArg(key_of, value) : get_item(value, item);
        if (key == NULL) {
            Py_DECREF(value);
            goto fail;
        }
        PyObject *contents = PyDict_GetItemWithError(pane, key); /* borrowed */
        if (contents == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            Py_DECREF(value);
            goto fail;
        }
        PyObject *updated;
        PyObject *slots[3] = {NULL, value, NULL};
        if (contents == NULL || contents == empty) { /* the window's first record */
            PyObject *fresh = call(create_function, create_self, create, slots + 1, 0);
            if (fresh == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto fail;
            }
            slots[2] = fresh;
            updated = call(add_function, add_self, add, slots + 1, 2);
            Py_DECREF(fresh);
            contents = NULL;
        }
        else {
            Py_INCREF(contents); /* add may replace it in the pane */
            slots[2] = contents;
            updated = call(add_function, add_self, add, slots + 1, 2);
        }
        Py_DECREF(value);
        int failed = updated == NULL;
        if (!failed && updated != contents) { /* else an accumulator updated in place */
            failed = PyDict_SetItem(pane, key, updated) < 0;
        }
        Py_XDECREF(updated);
        Py_XDECREF(contents);
        Py_DECREF(key);
        if (failed) {
            goto fail;
        }
    }
    Py_XDECREF(pane);
    Py_XDECREF(item);
    return PyLong_FromSsize_t(i);

fail:
    Py_XDECREF(pane);
    Py_XDECREF(item);
    return NULL;
}

static PyMethodDef pane_run_methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL,
     "run(values, timestamps, start, end, key_of, create, add, empty, panes, size, offset, "
     "highest) -> int\n\n"
     "The common case of a run of the tumbling window operator's records over its panes; the "
     "position of the first record it leaves to the Python loop, or end (see operator.py)."},
    {NULL, NULL, 0, NULL},
};

static int
pane_run_exec(PyObject *module)
{
    if (kernel_load_itemgetter() < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "VERSION", PANE_RUN_VERSION);
}

static PyModuleDef_Slot pane_run_slots[] = {
    {Py_mod_exec, pane_run_exec},
    {0, NULL},
};

static struct PyModuleDef pane_run_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "actorflow.operators.windows._pane_run",
    .m_doc = "The tumbling window operator's per-record loop over its panes, in C (optional).",
    .m_size = 0,
    .m_methods = pane_run_methods,
    .m_slots = pane_run_slots,
};

PyMODINIT_FUNC
PyInit__pane_run(void)
{
    return PyModuleDef_Init(&pane_run_module);
}

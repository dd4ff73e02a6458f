/* The punctuated watermark generator's pass over a batch, compiled: the optional C version of
 * actorflow.time.watermarks._plain_marks_python (the reference; a hypothesis test checks that both
 * answer the same). Built by setup.py when a compiler is present; watermarks.py falls back to the
 * Python function when this module is missing, stale, or ACTORFLOW_PURE_PYTHON is set.
 *
 * plain_marks(timestamps, highest, lag) -> (marks, new_highest) | None
 *
 * timestamps: a sequence; highest: an int (the maximum so far); lag: the watermark's lag.
 * marks: (position, timestamp - lag) for each timestamp above every earlier one, positions from 1.
 * None when the timestamps are not plain event times: empty, one not exactly an int (a bool, a
 * float), or one not strictly within -LIMIT..LIMIT (LIMIT = 2**63 - 1), or `highest` already at
 * LIMIT or above. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>

/* Bumped with every change of meaning: watermarks.py uses the module only when it agrees. */
#define MARKS_VERSION 1

/* A new maximum: append (position, timestamp - lag) to marks. 0 on success, -1 on error. The
 * subtraction is done in C when it cannot overflow, in Python otherwise (a huge or float lag). */
static int
append_mark(PyObject *marks, Py_ssize_t position, long long value, PyObject *timestamp,
            int lag_fits, long long lag, PyObject *lag_object)
{
    long long watermark;
    PyObject *mark_value;
    if (lag_fits && !__builtin_ssubll_overflow(value, lag, &watermark)) {
        mark_value = PyLong_FromLongLong(watermark);
    }
    else {
        mark_value = PyNumber_Subtract(timestamp, lag_object);
    }
    if (mark_value == NULL) {
        return -1;
    }
    PyObject *index = PyLong_FromSsize_t(position);
    if (index == NULL) {
        Py_DECREF(mark_value);
        return -1;
    }
    PyObject *mark = PyTuple_Pack(2, index, mark_value);
    Py_DECREF(index);
    Py_DECREF(mark_value);
    if (mark == NULL) {
        return -1;
    }
    int failed = PyList_Append(marks, mark);
    Py_DECREF(mark);
    return failed;
}

/* The pass itself over `items` (borrowed), from the maximum `start` (whose object is
 * `start_object`). Returns a new (marks, highest) tuple, Py_None (new reference) when the items are
 * not plain, or NULL on an error. */
static PyObject *
scan(PyObject *const *items, Py_ssize_t count, long long start, PyObject *start_object,
     int lag_fits, long long lag, PyObject *lag_object)
{
    long long highest = start;
    PyObject *highest_object = start_object;
    PyObject *marks = PyList_New(0);
    if (marks == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *timestamp = items[i];
        int overflow;
        if (!PyLong_CheckExact(timestamp)) {
            goto not_plain;
        }
        long long value = PyLong_AsLongLongAndOverflow(timestamp, &overflow);
        if (overflow) {
            goto not_plain;
        }
        /* -LIMIT < value < LIMIT: neither LLONG_MIN, LLONG_MIN + 1 nor LLONG_MAX. */
        if (value <= LLONG_MIN + 1 || value == LLONG_MAX) {
            goto not_plain;
        }
        if (value > highest) {
            highest = value;
            highest_object = timestamp;
            if (append_mark(marks, i + 1, value, timestamp, lag_fits, lag, lag_object) < 0) {
                Py_DECREF(marks);
                return NULL;
            }
        }
    }
    PyObject *result = PyTuple_Pack(2, marks, highest_object);
    Py_DECREF(marks);
    return result;

not_plain:
    Py_DECREF(marks);
    Py_RETURN_NONE;
}

static PyObject *
plain_marks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "plain_marks(timestamps, highest, lag) takes 3 arguments");
        return NULL;
    }
    PyObject *start_object = args[1];
    PyObject *lag_object = args[2];
    if (!PyLong_CheckExact(start_object)) {
        PyErr_SetString(PyExc_TypeError, "plain_marks: the maximum so far must be an int");
        return NULL;
    }
    int overflow;
    long long start = PyLong_AsLongLongAndOverflow(start_object, &overflow);
    if (overflow > 0 || start == LLONG_MAX) {
        Py_RETURN_NONE; /* the maximum is at LIMIT or above already: never plain */
    }
    if (overflow < 0) {
        start = LLONG_MIN; /* below every plain timestamp, as the huge negative int is */
    }
    long long lag = 0;
    int lag_fits = 0;
    if (PyLong_CheckExact(lag_object)) {
        lag = PyLong_AsLongLongAndOverflow(lag_object, &overflow);
        lag_fits = !overflow;
    }
    if (lag == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(args[0], "plain_marks: the timestamps must be a sequence");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject *result;
    if (count == 0) {
        result = Py_NewRef(Py_None);
    }
    else {
        result = scan(PySequence_Fast_ITEMS(sequence), count, start, start_object, lag_fits, lag,
                      lag_object);
    }
    Py_DECREF(sequence);
    return result;
}

static PyMethodDef marks_methods[] = {
    {"plain_marks", (PyCFunction)(void (*)(void))plain_marks, METH_FASTCALL,
     "plain_marks(timestamps, highest, lag) -> (marks, highest) | None\n\n"
     "The punctuated watermark marks of a batch of plain event times (see watermarks.py)."},
    {NULL, NULL, 0, NULL},
};

static int
marks_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "VERSION", MARKS_VERSION) < 0) {
        return -1;
    }
    PyObject *limit = PyLong_FromLongLong(LLONG_MAX);
    if (limit == NULL) {
        return -1;
    }
    int failed = PyModule_AddObject(module, "LIMIT", limit);
    if (failed < 0) {
        Py_DECREF(limit);
    }
    return failed;
}

static PyModuleDef_Slot marks_slots[] = {
    {Py_mod_exec, marks_exec},
    {0, NULL},
};

static struct PyModuleDef marks_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "actorflow.time._marks",
    .m_doc = "The punctuated watermark generator's pass over a batch, in C (optional).",
    .m_size = 0,
    .m_methods = marks_methods,
    .m_slots = marks_slots,
};

PyMODINIT_FUNC
PyInit__marks(void)
{
    return PyModuleDef_Init(&marks_module);
}

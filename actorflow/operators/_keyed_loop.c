/* The keyed process operator's per-record loop, compiled: the optional C version of
 * KeyedProcessOperator._process_unmarked and ._process_marked (actorflow/operators/process.py, the
 * reference; a hypothesis test checks that both do the same). Built by setup.py when a compiler is
 * present; process.py runs its Python loops when this module is missing, stale, or
 * ACTORFLOW_PURE_PYTHON is set.
 *
 * run(values, timestamps, key_of, process, ctx, out, keys) -> None
 *     For each record: keys.current = key_of(value); ctx.timestamp = its timestamp (when
 *     timestamps is not None); process(value, ctx, out).
 *
 * run_marked(values, timestamps, marks, key_of, process, ctx, out, keys, timers, queue, output,
 *            advance) -> None
 *     The same, with ctx.timestamp set for every record (None without timestamps), and before the
 *     record at each mark's position (marks: (position, watermark) in position order; several may
 *     share a position; those at len(values) or after follow the last record) the mark is passed:
 *     timers.watermark = watermark, and if queue.next_time is not None and <= watermark,
 *     advance(watermark, output) fires the timers (and does the rest), otherwise
 *     output.pending = watermark. A record's key is computed before the marks at its position.
 *
 * Nothing here depends on the layout of the objects it is given: an attribute is found per batch
 * as the interpreter's own attribute cache finds it (a __slots__ member, or a C type's object
 * member, reached through the generic setattr: then a store at its offset, as STORE_ATTR_SLOT
 * does), and anything else goes through PyObject_SetAttr / PyObject_GetAttr. An exception from any
 * call stops the loop at once and propagates, leaving the objects as the Python loop leaves them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "../_kernel.h"

/* Bumped with every change of meaning: process.py uses the module only when it agrees. */
#define KEYED_LOOP_VERSION 1

/* Interned attribute names, made once by the module's exec. */
static PyObject *str_current, *str_timestamp, *str_watermark, *str_next_time, *str_pending;

/* An attribute of an object, `obj.name`, as the loop reads or writes it: at `offset` in the object
 * when it is an object member found by the generic attribute protocol, otherwise (offset 0) by
 * name. Found once per batch. */
typedef struct {
    PyObject *obj, *name;
    Py_ssize_t offset;
} Slot;

static void
find_slot(Slot *slot, PyObject *obj, PyObject *name)
{
    slot->obj = obj;
    slot->name = name;
    slot->offset = 0;
    PyTypeObject *type = Py_TYPE(obj);
    if (type->tp_setattro != PyObject_GenericSetAttr ||
        type->tp_getattro != PyObject_GenericGetAttr) {
        return; /* the object's own protocol decides */
    }
    /* A data descriptor on the type wins over an instance's __dict__: a member found here is
     * what obj.name means, for reading and writing. */
    PyObject *descr = _PyType_Lookup(type, name); /* borrowed */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        !PyObject_TypeCheck(obj, PyDescr_TYPE(descr))) {
        return;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type == T_OBJECT_EX && member->flags == 0 && member->offset > 0) {
        slot->offset = member->offset;
    }
}

/* obj.name = value. 0 on success, -1 on error. */
static inline int
slot_store(const Slot *slot, PyObject *value)
{
    if (slot->offset == 0) {
        return PyObject_SetAttr(slot->obj, slot->name, value);
    }
    PyObject **address = (PyObject **)((char *)slot->obj + slot->offset);
    PyObject *old = *address;
    *address = Py_NewRef(value);
    Py_XDECREF(old); /* last: its finalizer sees the new value in place */
    return 0;
}

/* obj.name, a new reference, or NULL on error. */
static inline PyObject *
slot_load(const Slot *slot)
{
    if (slot->offset != 0) {
        PyObject *value = *(PyObject **)((char *)slot->obj + slot->offset);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(slot->obj, slot->name); /* an unset member raises as it should */
}

/* The objects one batch's loop works with (borrowed from the arguments). */
typedef struct {
    PyObject *key_of, *process, *ctx, *out, *advance, *output;
    /* key_of(value) is value[item] when key_of is itemgetter(item) (then item is owned). */
    PyObject *item;
    /* process(value, ctx, out) as `function(self, value, ctx, out)` when it is a bound method
     * (self NULL otherwise): what the method's own call would do, without its step. */
    PyObject *function, *self;
    Slot current, timestamp;           /* keys.current, ctx.timestamp */
    Slot watermark, next_time, pending; /* timers.watermark, queue.next_time, output.pending */
} Loop;

/* Pass one watermark (see run_marked). The common case, no timer due, costs two attribute
 * stores and a read here rather than a Python call. 0 on success, -1 on error. */
static int
pass_mark(const Loop *loop, PyObject *watermark)
{
    if (slot_store(&loop->watermark, watermark) < 0) {
        return -1;
    }
    PyObject *next_time = slot_load(&loop->next_time);
    if (next_time == NULL) {
        return -1;
    }
    int due = 0;
    if (next_time != Py_None) {
        due = PyObject_RichCompareBool(next_time, watermark, Py_LE);
    }
    Py_DECREF(next_time);
    if (due < 0) {
        return -1;
    }
    if (!due) {
        return slot_store(&loop->pending, watermark);
    }
    /* Timers are due (rarely): the operator's own step fires them and passes the mark on. */
    PyObject *args[2] = {watermark, loop->output};
    PyObject *result = PyObject_Vectorcall(loop->advance, args, 2, NULL);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* The mark at `index` of `marks` (a fast sequence): its position (clamped to the Py_ssize_t
 * range) and its watermark (a new reference). 0 on success, -1 on error. */
static int
read_mark(PyObject *marks, Py_ssize_t index, Py_ssize_t *position, PyObject **watermark)
{
    PyObject *mark = PySequence_Fast_GET_ITEM(marks, index);
    /* A tuple as marks are made; any other pair too. */
    PyObject *pair = PyTuple_CheckExact(mark)
                         ? Py_NewRef(mark)
                         : PySequence_Fast(mark, "a mark must be a (position, watermark) pair");
    if (pair == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(pair) != 2) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_ValueError, "a mark must be a (position, watermark) pair");
        return -1;
    }
    Py_ssize_t found = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(pair, 0), NULL);
    if (found == -1 && PyErr_Occurred()) {
        Py_DECREF(pair);
        return -1;
    }
    *position = found;
    *watermark = Py_NewRef(PySequence_Fast_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    return 0;
}

/* The loop over `values` (a fast sequence); `timestamps` a fast sequence of the same length or
 * NULL; `marks` a fast sequence or NULL (then no mark and ctx.timestamp untouched without
 * timestamps). 0 on success, -1 on error. */
static int
run_loop(const Loop *loop, PyObject *values, PyObject *timestamps, PyObject *marks)
{
    /* Counts are read where they are used: a list the user's code shortens ends the loop. */
    Py_ssize_t mark_index = 0;
    Py_ssize_t next_position = PY_SSIZE_T_MAX;
    PyObject *watermark = NULL; /* the watermark of the next mark (owned) */
    PyObject *value = NULL, *key = NULL; /* the record's (owned) */
    if (marks != NULL && PySequence_Fast_GET_SIZE(marks) &&
        read_mark(marks, 0, &next_position, &watermark) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(values); i++) {
        value = Py_NewRef(PySequence_Fast_GET_ITEM(values, i));
        key = loop->item == NULL ? PyObject_CallOneArg(loop->key_of, value) : get_item(value, loop->item);
        if (key == NULL) {
            goto fail;
        }
        while (next_position <= i) { /* the marks before this record, in order */
            int failed = pass_mark(loop, watermark);
            Py_CLEAR(watermark);
            if (failed < 0) {
                goto fail;
            }
            next_position = PY_SSIZE_T_MAX;
            if (++mark_index < PySequence_Fast_GET_SIZE(marks) &&
                read_mark(marks, mark_index, &next_position, &watermark) < 0) {
                goto fail;
            }
        }
        int failed = slot_store(&loop->current, key);
        Py_CLEAR(key);
        if (failed < 0) {
            goto fail;
        }
        if (timestamps != NULL) {
            if (i >= PySequence_Fast_GET_SIZE(timestamps)) {
                PyErr_SetString(PyExc_ValueError, "a batch needs as many timestamps as values");
                goto fail;
            }
            failed = slot_store(&loop->timestamp, PySequence_Fast_GET_ITEM(timestamps, i));
        }
        else if (marks != NULL) {
            failed = slot_store(&loop->timestamp, Py_None);
        }
        if (failed < 0) {
            goto fail;
        }
        PyObject *result;
        if (loop->self != NULL) {
            PyObject *args[4] = {loop->self, value, loop->ctx, loop->out};
            result = PyObject_Vectorcall(loop->function, args, 4, NULL);
        }
        else { /* a slot free before the arguments lets a callee prepend one without a copy */
            PyObject *args[4] = {NULL, value, loop->ctx, loop->out};
            result = PyObject_Vectorcall(loop->process, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
        }
        Py_CLEAR(value);
        if (result == NULL) {
            goto fail;
        }
        Py_DECREF(result);
    }
    /* The marks at the end or after it follow the last record. */
    while (watermark != NULL) {
        int failed = pass_mark(loop, watermark);
        Py_CLEAR(watermark);
        if (failed < 0) {
            return -1;
        }
        if (++mark_index < PySequence_Fast_GET_SIZE(marks) &&
            read_mark(marks, mark_index, &next_position, &watermark) < 0) {
            return -1;
        }
    }
    return 0;

fail:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(watermark);
    return -1;
}

/* Runs the loop on the arguments' fast sequences, checking that the timestamps (if any) are as
 * many as the values. Returns None or NULL. */
static PyObject *
run_batch(const Loop *loop, PyObject *values_arg, PyObject *timestamps_arg, PyObject *marks_arg)
{
    PyObject *values = PySequence_Fast(values_arg, "the values must be a sequence");
    if (values == NULL) {
        return NULL;
    }
    PyObject *timestamps = NULL, *marks = NULL;
    int failed = -1;
    if (timestamps_arg != Py_None) {
        timestamps = PySequence_Fast(timestamps_arg, "the timestamps must be a sequence");
        if (timestamps == NULL) {
            goto done;
        }
        if (PySequence_Fast_GET_SIZE(timestamps) != PySequence_Fast_GET_SIZE(values)) {
            PyErr_SetString(PyExc_ValueError, "a batch needs as many timestamps as values");
            goto done;
        }
    }
    if (marks_arg != NULL) {
        marks = PySequence_Fast(marks_arg, "the marks must be a sequence");
        if (marks == NULL) {
            goto done;
        }
    }
    failed = run_loop(loop, values, timestamps, marks);
done:
    Py_DECREF(values);
    Py_XDECREF(timestamps);
    Py_XDECREF(marks);
    if (failed < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The loop's objects; timers, queue and output NULL without marks. The caller releases
 * loop->item. */
static void
init_loop(Loop *loop, PyObject *key_of, PyObject *process, PyObject *ctx, PyObject *out,
          PyObject *keys, PyObject *timers, PyObject *queue, PyObject *output, PyObject *advance)
{
    loop->key_of = key_of;
    loop->item = itemgetter_item(key_of);
    loop->process = process;
    loop->ctx = ctx;
    loop->out = out;
    loop->advance = advance;
    loop->output = output;
    loop->function = process;
    loop->self = NULL;
    if (PyMethod_Check(process)) {
        loop->function = PyMethod_GET_FUNCTION(process);
        loop->self = PyMethod_GET_SELF(process);
    }
    find_slot(&loop->current, keys, str_current);
    find_slot(&loop->timestamp, ctx, str_timestamp);
    if (timers != NULL) {
        find_slot(&loop->watermark, timers, str_watermark);
        find_slot(&loop->next_time, queue, str_next_time);
        find_slot(&loop->pending, output, str_pending);
    }
}

static PyObject *
run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "run(values, timestamps, key_of, process, ctx, out, keys) takes 7 arguments");
        return NULL;
    }
    Loop loop;
    init_loop(&loop, args[2], args[3], args[4], args[5], args[6], NULL, NULL, NULL, NULL);
    PyObject *result = run_batch(&loop, args[0], args[1], NULL);
    Py_XDECREF(loop.item);
    return result;
}

static PyObject *
run_marked(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "run_marked(values, timestamps, marks, key_of, process, ctx, out, keys, "
                        "timers, queue, output, advance) takes 12 arguments");
        return NULL;
    }
    Loop loop;
    init_loop(&loop, args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[10],
              args[11]);
    PyObject *result = run_batch(&loop, args[0], args[1], args[2]);
    Py_XDECREF(loop.item);
    return result;
}

static PyMethodDef keyed_loop_methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL,
     "run(values, timestamps, key_of, process, ctx, out, keys) -> None\n\n"
     "A batch's records without watermarks through a keyed process function (see process.py)."},
    {"run_marked", (PyCFunction)(void (*)(void))run_marked, METH_FASTCALL,
     "run_marked(values, timestamps, marks, key_of, process, ctx, out, keys, timers, queue, "
     "output, advance) -> None\n\n"
     "A batch's records and watermarks through a keyed process function (see process.py)."},
    {NULL, NULL, 0, NULL},
};

static int
intern(PyObject **name, const char *text)
{
    if (*name == NULL) {
        *name = PyUnicode_InternFromString(text); /* kept for the life of the process */
    }
    return *name == NULL ? -1 : 0;
}

static int
keyed_loop_exec(PyObject *module)
{
    if (intern(&str_current, "current") < 0 || intern(&str_timestamp, "timestamp") < 0 ||
        intern(&str_watermark, "watermark") < 0 || intern(&str_next_time, "next_time") < 0 ||
        intern(&str_pending, "pending") < 0) {
        return -1;
    }
    if (kernel_load_itemgetter() < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "VERSION", KEYED_LOOP_VERSION);
}

static PyModuleDef_Slot keyed_loop_slots[] = {
    {Py_mod_exec, keyed_loop_exec},
    {0, NULL},
};

static struct PyModuleDef keyed_loop_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "actorflow.operators._keyed_loop",
    .m_doc = "The keyed process operator's per-record loop, in C (optional).",
    .m_size = 0,
    .m_methods = keyed_loop_methods,
    .m_slots = keyed_loop_slots,
};

PyMODINIT_FUNC
PyInit__keyed_loop(void)
{
    return PyModuleDef_Init(&keyed_loop_module);
}

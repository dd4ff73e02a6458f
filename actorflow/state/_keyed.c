/* Keyed state handles, compiled: the optional C version of the handle methods a keyed function
 * calls on every record (ValueState.value/update/clear, ListState.get/add, MapState.get/put) and
 * of the KeyContext they read the current key from. The reference is the pure Python of
 * actorflow/state/keyed.py (_PyKeyContext, _PyHandle, ...); a hypothesis test drives both with the
 * same operations and checks the same answers, errors and tables. Built by setup.py when a
 * compiler is present; keyed.py falls back to the Python classes when this module is missing,
 * stale, or ACTORFLOW_PURE_PYTHON is set.
 *
 * Why C: a Python method called from Python costs ~450 instructions, a C method with METH_NOARGS
 * or METH_O ~100-150, and value() is called once per record.
 *
 * KeyContext()                              .current: the key (NO_KEY outside a keyed call)
 * Handle(name, keys, table)                 ._key(), .clear()
 * ValueHandle(name, keys, table, default)   .value(), .update(value)
 * ListHandle(name, keys, table)             .get(), .add(value)
 * MapHandle(name, keys, table)              .get(key, default=None), .put(key, value)
 * configure(no_key, error)                  the NO_KEY sentinel, and error(name) -> the exception
 *                                           raised when a handle is used without a current key
 *
 * A table that is exactly a dict is used through the dict API; any other mapping (RocksDB's) by
 * its get / __setitem__ / pop, as the Python methods do. The fields are members named as the
 * Python slots (_keys, _name, _table, _default), so Python subclasses (TTL handles) read them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Bumped with every change of meaning: keyed.py uses the module only when it agrees. */
#define KEYED_VERSION 2

/* Set by configure(): the NO_KEY sentinel and the factory of the no-current-key error. */
static PyObject *no_key = NULL;
static PyObject *no_key_error = NULL;

static PyObject *str_current, *str_keys, *str_name, *str_table, *str_default;
static PyObject *str_get, *str_pop, *str_append, *empty_tuple;

/* ---- KeyContext ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *current;
} KeyContext;

static PyTypeObject KeyContextType;

static PyObject *
not_configured(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "actorflow.state._keyed is used before configure(): import actorflow.state.keyed");
    return NULL;
}

static PyObject *
keycontext_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "KeyContext() takes no arguments");
        return NULL;
    }
    if (no_key == NULL) {
        return not_configured();
    }
    KeyContext *self = (KeyContext *)type->tp_alloc(type, 0);
    if (self != NULL) {
        Py_INCREF(no_key);
        self->current = no_key;
    }
    return (PyObject *)self;
}

static int
keycontext_traverse(KeyContext *self, visitproc visit, void *arg)
{
    Py_VISIT(self->current);
    return 0;
}

static int
keycontext_clear(KeyContext *self)
{
    Py_CLEAR(self->current);
    return 0;
}

static void
keycontext_dealloc(KeyContext *self)
{
    PyObject_GC_UnTrack(self);
    keycontext_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* copy and pickle as for a Python object with __slots__: () here, and the members named in the
 * type's __slots__ (set at import) as the state, so copies behave as the Python class's do. */
static PyObject *
getnewargs(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyTuple_New(0);
}

static PyMemberDef keycontext_members[] = {
    /* T_OBJECT_EX, as a Python __slots__ slot: the interpreter specialises loads and stores. */
    {"current", T_OBJECT_EX, offsetof(KeyContext, current), 0, "The current key, or NO_KEY."},
    {NULL},
};

static PyMethodDef keycontext_methods[] = {
    {"__getnewargs__", getnewargs, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject KeyContextType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "actorflow.state._keyed.KeyContext",
    .tp_doc = "Holds the key the state handles work on; set by the keyed operator per record and timer.",
    .tp_basicsize = sizeof(KeyContext),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = keycontext_new,
    .tp_dealloc = (destructor)keycontext_dealloc,
    .tp_traverse = (traverseproc)keycontext_traverse,
    .tp_clear = (inquiry)keycontext_clear,
    .tp_members = keycontext_members,
    .tp_methods = keycontext_methods,
};

/* ---- Handle: keys, name, table; _key() and clear() ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *keys;
    PyObject *name;
    PyObject *table;
} Handle;

typedef struct {
    Handle base;
    PyObject *default_;
} ValueHandle;

static int
handle_traverse(Handle *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keys);
    Py_VISIT(self->name);
    Py_VISIT(self->table);
    return 0;
}

static int
handle_clear(Handle *self)
{
    Py_CLEAR(self->keys);
    Py_CLEAR(self->name);
    Py_CLEAR(self->table);
    return 0;
}

static void
handle_dealloc(Handle *self)
{
    PyObject_GC_UnTrack(self);
    handle_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Store the fields (the Python __init__'s assignments, in its order). */
static int
handle_set(Handle *self, PyObject *name, PyObject *keys, PyObject *table)
{
    if (no_key == NULL) {
        not_configured();
        return -1;
    }
    Py_INCREF(name);
    Py_XSETREF(self->name, name);
    Py_INCREF(keys);
    Py_XSETREF(self->keys, keys);
    Py_INCREF(table);
    Py_XSETREF(self->table, table);
    return 0;
}

static int
handle_init(Handle *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"name", "keys", "table", NULL};
    PyObject *name, *keys, *table;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:__init__", names, &name, &keys, &table)) {
        return -1;
    }
    return handle_set(self, name, keys, table);
}

/* A field of the handle (a new reference). An unset one is read as an attribute: that raises the
 * AttributeError reading the Python slot would (or finds what a subclass put in its place). */
static PyObject *
field(Handle *self, PyObject *value, PyObject *attribute)
{
    if (value == NULL) {
        return PyObject_GetAttr((PyObject *)self, attribute);
    }
    Py_INCREF(value);
    return value;
}

/* The current key (a new reference), or NULL with the error set: the state error when it is
 * NO_KEY. A KeyContext's slot is read directly; any other keys object by its attribute. */
static PyObject *
current_key(Handle *self)
{
    PyObject *keys = self->keys, *key;
    if (keys != NULL && Py_IS_TYPE(keys, &KeyContextType) && ((KeyContext *)keys)->current != NULL) {
        key = ((KeyContext *)keys)->current; /* the hot path: no call */
        Py_INCREF(key);
    }
    else {
        keys = field(self, keys, str_keys);
        if (keys == NULL) {
            return NULL;
        }
        key = PyObject_GetAttr(keys, str_current);
        Py_DECREF(keys);
        if (key == NULL) {
            return NULL;
        }
    }
    if (key != no_key) {
        return key;
    }
    Py_DECREF(key);
    PyObject *name = field(self, self->name, str_name);
    if (name == NULL) {
        return NULL;
    }
    PyObject *error = PyObject_CallOneArg(no_key_error, name); /* raise _no_key(self._name) */
    Py_DECREF(name);
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return NULL;
}

/* The current key and the table (new references) into *key and *table; -1 with the error set. */
static int
key_and_table(Handle *self, PyObject **key, PyObject **table)
{
    *key = current_key(self);
    if (*key == NULL) {
        return -1;
    }
    *table = field(self, self->table, str_table);
    if (*table == NULL) {
        Py_CLEAR(*key);
        return -1;
    }
    return 0;
}

/* mapping.get(key) with one argument (fallback NULL) or two: a new reference, NULL on error. */
static PyObject *
mapping_get(PyObject *mapping, PyObject *key, PyObject *fallback)
{
    if (PyDict_CheckExact(mapping)) {
        PyObject *found = PyDict_GetItemWithError(mapping, key);
        if (found == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            found = fallback == NULL ? Py_None : fallback;
        }
        Py_INCREF(found);
        return found;
    }
    PyObject *args[4] = {NULL, mapping, key, fallback};
    size_t count = fallback == NULL ? 2 : 3;
    return PyObject_VectorcallMethod(str_get, args + 1, count | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *
handle_key(Handle *self, PyObject *Py_UNUSED(ignored))
{
    return current_key(self);
}

static PyObject *
handle_clear_entry(Handle *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *key, *table, *removed;
    if (key_and_table(self, &key, &table) < 0) {
        return NULL;
    }
    if (PyDict_CheckExact(table)) {
#if PY_VERSION_HEX >= 0x030D0000
        int found = PyDict_Pop(table, key, NULL);
        removed = found < 0 ? NULL : Py_NewRef(Py_None);
#else
        removed = _PyDict_Pop(table, key, Py_None);
#endif
    }
    else {
        PyObject *args[4] = {NULL, table, key, Py_None};
        removed = PyObject_VectorcallMethod(str_pop, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_DECREF(key);
    Py_DECREF(table);
    if (removed == NULL) {
        return NULL;
    }
    Py_DECREF(removed);
    Py_RETURN_NONE;
}

static PyMemberDef handle_members[] = {
    {"_keys", T_OBJECT_EX, offsetof(Handle, keys), 0, NULL},
    {"_name", T_OBJECT_EX, offsetof(Handle, name), 0, NULL},
    {"_table", T_OBJECT_EX, offsetof(Handle, table), 0, NULL},
    {NULL},
};

static PyMethodDef handle_methods[] = {
    {"_key", (PyCFunction)handle_key, METH_NOARGS, "The current key; StateError without one."},
    {"clear", (PyCFunction)handle_clear_entry, METH_NOARGS, "Remove the current key's entry."},
    {"__getnewargs__", getnewargs, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "actorflow.state._keyed.Handle",
    .tp_doc = "Handle(name, keys, table): a state's table, scoped to the current key.",
    .tp_basicsize = sizeof(Handle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)handle_init,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_members = handle_members,
    .tp_methods = handle_methods,
};

/* ---- ValueHandle: value(), update(value) ---------------------------------------------------- */

static int
value_traverse(ValueHandle *self, visitproc visit, void *arg)
{
    Py_VISIT(self->default_);
    return handle_traverse(&self->base, visit, arg);
}

static int
value_clear(ValueHandle *self)
{
    Py_CLEAR(self->default_);
    return handle_clear(&self->base);
}

static void
value_dealloc(ValueHandle *self)
{
    PyObject_GC_UnTrack(self);
    value_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
value_init(ValueHandle *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"name", "keys", "table", "default", NULL};
    PyObject *name, *keys, *table, *default_;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO:__init__", names, &name, &keys, &table,
                                     &default_)) {
        return -1;
    }
    if (handle_set(&self->base, name, keys, table) < 0) {
        return -1;
    }
    Py_INCREF(default_);
    Py_XSETREF(self->default_, default_);
    return 0;
}

static PyObject *
value_value(ValueHandle *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *key, *table;
    if (key_and_table(&self->base, &key, &table) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *default_ = field(&self->base, self->default_, str_default);
    if (default_ != NULL) {
        result = mapping_get(table, key, default_); /* the default object itself when absent */
        Py_DECREF(default_);
    }
    Py_DECREF(key);
    Py_DECREF(table);
    return result;
}

/* Bind a METH_FASTCALL | METH_KEYWORDS call's arguments to `names`, the parameters of the Python
 * signature in order (so `update(value=v)` works as with the Python handles): out[i] borrowed, NULL
 * when not given. 0, or -1 with the TypeError Python would raise. The plain positional call skips it. */
static int
bind_arguments(const char *function, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               const char *const *names, Py_ssize_t total, Py_ssize_t required, PyObject **out)
{
    if (nargs > total) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", function, total,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < total; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t given = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < given; k++) {
        PyObject *keyword = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t i = 0;
        while (i < total && PyUnicode_CompareWithASCIIString(keyword, names[i]) != 0) {
            i++;
        }
        if (i == total) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", function,
                         keyword);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", function,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function, names[i]);
            return -1;
        }
    }
    return 0;
}

static const char *const value_names[] = {"value"};
static const char *const map_names[] = {"key", "default"};
static const char *const put_names[] = {"key", "value"};

static PyObject *
value_update(ValueHandle *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *value;
    if (kwnames == NULL && nargs == 1) {
        value = args[0];
    }
    else if (bind_arguments("update", args, nargs, kwnames, value_names, 1, 1, &value) < 0) {
        return NULL;
    }
    PyObject *key, *table;
    if (key_and_table(&self->base, &key, &table) < 0) {
        return NULL;
    }
    int failed = PyDict_CheckExact(table) ? PyDict_SetItem(table, key, value)
                                          : PyObject_SetItem(table, key, value);
    Py_DECREF(key);
    Py_DECREF(table);
    if (failed < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMemberDef value_members[] = {
    {"_default", T_OBJECT_EX, offsetof(ValueHandle, default_), 0, NULL},
    {NULL},
};

static PyMethodDef value_methods[] = {
    {"value", (PyCFunction)value_value, METH_NOARGS, "The stored value, or the descriptor's default."},
    {"update", (PyCFunction)(void (*)(void))value_update, METH_FASTCALL | METH_KEYWORDS,
     "Store the current key's value."},
    {NULL},
};

static PyTypeObject ValueHandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "actorflow.state._keyed.ValueHandle",
    .tp_doc = "ValueHandle(name, keys, table, default): one value for the current key.",
    .tp_basicsize = sizeof(ValueHandle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)value_init,
    .tp_dealloc = (destructor)value_dealloc,
    .tp_traverse = (traverseproc)value_traverse,
    .tp_clear = (inquiry)value_clear,
    .tp_members = value_members,
    .tp_methods = value_methods,
};

/* ---- ListHandle: get(), add(value) ---------------------------------------------------------- */

static PyObject *
list_get(Handle *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *key, *table;
    if (key_and_table(self, &key, &table) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *entry = mapping_get(table, key, empty_tuple);
    Py_DECREF(key);
    Py_DECREF(table);
    if (entry != NULL) {
        result = PySequence_List(entry); /* a new list, as list(entry) */
        Py_DECREF(entry);
    }
    return result;
}

static PyObject *
list_add(Handle *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *value;
    if (kwnames == NULL && nargs == 1) {
        value = args[0];
    }
    else if (bind_arguments("add", args, nargs, kwnames, value_names, 1, 1, &value) < 0) {
        return NULL;
    }
    PyObject *key, *table;
    if (key_and_table(self, &key, &table) < 0) {
        return NULL;
    }
    int failed = -1;
    PyObject *entry = mapping_get(table, key, NULL);
    if (entry == Py_None) {
        PyObject *fresh = PyList_New(1);
        if (fresh != NULL) {
            Py_INCREF(value);
            PyList_SET_ITEM(fresh, 0, value);
            failed = PyObject_SetItem(table, key, fresh);
            Py_DECREF(fresh);
        }
    }
    else if (entry != NULL) {
        if (PyList_CheckExact(entry)) {
            failed = PyList_Append(entry, value);
        }
        else {
            PyObject *done = PyObject_CallMethodOneArg(entry, str_append, value);
            failed = done == NULL ? -1 : 0;
            Py_XDECREF(done);
        }
    }
    Py_XDECREF(entry);
    Py_DECREF(key);
    Py_DECREF(table);
    if (failed < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef list_methods[] = {
    {"get", (PyCFunction)list_get, METH_NOARGS,
     "The stored values (a new list; empty when nothing was stored)."},
    {"add", (PyCFunction)(void (*)(void))list_add, METH_FASTCALL | METH_KEYWORDS,
     "Append a value to the current key's list."},
    {NULL},
};

static PyTypeObject ListHandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "actorflow.state._keyed.ListHandle",
    .tp_doc = "ListHandle(name, keys, table): a list of values for the current key.",
    .tp_basicsize = sizeof(Handle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)handle_init,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_methods = list_methods,
};

/* ---- MapHandle: get(key, default=None), put(key, value) ------------------------------------- */

static PyObject *
map_get(Handle *self, PyObject *const *args, Py_ssize_t count, PyObject *kwnames)
{
    PyObject *bound[2];
    if (kwnames != NULL || count < 1 || count > 2) {
        if (bind_arguments("get", args, count, kwnames, map_names, 2, 1, bound) < 0) {
            return NULL;
        }
        count = bound[1] == NULL ? 1 : 2;
        args = bound;
    }
    PyObject *key, *table;
    if (key_and_table(self, &key, &table) < 0) {
        return NULL;
    }
    PyObject *fallback = count == 2 ? args[1] : Py_None;
    PyObject *result, *entry = mapping_get(table, key, NULL);
    Py_DECREF(key);
    Py_DECREF(table);
    if (entry == NULL || entry == Py_None) {
        result = entry == NULL ? NULL : Py_NewRef(fallback);
    }
    else {
        result = mapping_get(entry, args[0], fallback);
    }
    Py_XDECREF(entry);
    return result;
}

static PyObject *
map_put(Handle *self, PyObject *const *args, Py_ssize_t count, PyObject *kwnames)
{
    PyObject *bound[2];
    if (kwnames != NULL || count != 2) {
        if (bind_arguments("put", args, count, kwnames, put_names, 2, 2, bound) < 0) {
            return NULL;
        }
        args = bound;
    }
    PyObject *key, *table;
    if (key_and_table(self, &key, &table) < 0) {
        return NULL;
    }
    int failed = -1;
    PyObject *entry = mapping_get(table, key, NULL);
    if (entry == Py_None) {
        PyObject *fresh = PyDict_New();
        if (fresh != NULL) {
            if (PyDict_SetItem(fresh, args[0], args[1]) == 0) {
                failed = PyObject_SetItem(table, key, fresh);
            }
            Py_DECREF(fresh);
        }
    }
    else if (entry != NULL) {
        failed = PyObject_SetItem(entry, args[0], args[1]);
    }
    Py_XDECREF(entry);
    Py_DECREF(key);
    Py_DECREF(table);
    if (failed < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef map_methods[] = {
    {"get", (PyCFunction)(void (*)(void))map_get, METH_FASTCALL | METH_KEYWORDS,
     "The current key's value for `key`, or `default`."},
    {"put", (PyCFunction)(void (*)(void))map_put, METH_FASTCALL | METH_KEYWORDS,
     "Set the current key's `key` to `value`."},
    {NULL},
};

static PyTypeObject MapHandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "actorflow.state._keyed.MapHandle",
    .tp_doc = "MapHandle(name, keys, table): a dict for the current key.",
    .tp_basicsize = sizeof(Handle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)handle_init,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_methods = map_methods,
};

/* ---- the module ----------------------------------------------------------------------------- */

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 2) {
        PyErr_Format(PyExc_TypeError, "configure expected 2 arguments, got %zd", count);
        return NULL;
    }
    if (!PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "configure: the error factory must be callable");
        return NULL;
    }
    Py_XSETREF(no_key, Py_NewRef(args[0]));
    Py_XSETREF(no_key_error, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(no_key, error): the NO_KEY sentinel, and error(name) -> the exception a handle "
     "raises when used without a current key. Call it before making a KeyContext or handle."},
    {NULL},
};

static struct PyModuleDef keyed_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "actorflow.state._keyed",
    .m_doc = "Keyed state handles, compiled (see actorflow/state/keyed.py for the reference).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* Ready `type`, name its members in __slots__ (copy and pickle then carry them as a Python
 * object's slots) and add it to the module. */
static int
add_type(PyObject *module, PyTypeObject *type, const char *name, const char *slots)
{
    if (PyType_Ready(type) < 0) {
        return -1;
    }
    PyObject *text = PyUnicode_FromString(slots);
    PyObject *names = text == NULL ? NULL : PyUnicode_Split(text, NULL, -1); /* "a b" -> [a, b] */
    Py_XDECREF(text);
    if (names == NULL) {
        return -1;
    }
    int failed = PyDict_SetItemString(type->tp_dict, "__slots__", names);
    Py_DECREF(names);
    if (failed < 0) {
        return -1;
    }
    PyType_Modified(type);
    return PyModule_AddObjectRef(module, name, (PyObject *)type);
}

PyMODINIT_FUNC
PyInit__keyed(void)
{
    if (!(str_current = PyUnicode_InternFromString("current"))
        || !(str_keys = PyUnicode_InternFromString("_keys"))
        || !(str_name = PyUnicode_InternFromString("_name"))
        || !(str_table = PyUnicode_InternFromString("_table"))
        || !(str_default = PyUnicode_InternFromString("_default"))
        || !(str_get = PyUnicode_InternFromString("get"))
        || !(str_pop = PyUnicode_InternFromString("pop"))
        || !(str_append = PyUnicode_InternFromString("append"))
        || !(empty_tuple = PyTuple_New(0))) {
        return NULL;
    }
    ValueHandleType.tp_base = &HandleType;
    ListHandleType.tp_base = &HandleType;
    MapHandleType.tp_base = &HandleType;
    PyObject *module = PyModule_Create(&keyed_module);
    if (module == NULL) {
        return NULL;
    }
    if (add_type(module, &KeyContextType, "KeyContext", "current") < 0
        || add_type(module, &HandleType, "Handle", "_keys _name _table") < 0
        || add_type(module, &ValueHandleType, "ValueHandle", "_default") < 0
        || add_type(module, &ListHandleType, "ListHandle", "") < 0
        || add_type(module, &MapHandleType, "MapHandle", "") < 0
        || PyModule_AddIntConstant(module, "VERSION", KEYED_VERSION) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

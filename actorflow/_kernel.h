/* What the compiled per-record loops (actorflow/operators/_keyed_loop.c,
 * actorflow/operators/windows/_pane_run.c) share: reading a record's key without calling the key
 * selector when it is operator.itemgetter(field), as key_by("field") makes it. Each module that
 * includes this gets its own copy (everything here is static); it calls kernel_load_itemgetter()
 * once from its exec slot. */

#ifndef ACTORFLOW_KERNEL_H
#define ACTORFLOW_KERNEL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* operator.itemgetter, kept for the life of the process. */
static PyObject *itemgetter_type;
/* The last itemgetter seen, and its item (NULL if it has none of its own: several items). */
static PyObject *last_key_of, *last_item;

/* Find operator.itemgetter. 0, or -1 with the error set. */
static int
kernel_load_itemgetter(void)
{
    if (itemgetter_type != NULL) {
        return 0;
    }
    PyObject *operator = PyImport_ImportModule("operator");
    if (operator == NULL) {
        return -1;
    }
    itemgetter_type = PyObject_GetAttrString(operator, "itemgetter");
    Py_DECREF(operator);
    return itemgetter_type == NULL ? -1 : 0;
}

/* The item of `key_of` if it is operator.itemgetter(item) of one item (then key_of(value) is
 * value[item], which costs no call; a tuple's item is the same as at the itemgetter's fast path),
 * a new reference; NULL otherwise. Never fails: anything unexpected means "call key_of". The
 * last selector's item is kept (with the selector, so that its identity stays its own) rather
 * than asked for again: a loop asks once per batch or run. */
static PyObject *
itemgetter_item(PyObject *key_of)
{
    if (itemgetter_type == NULL || (PyObject *)Py_TYPE(key_of) != itemgetter_type) {
        return NULL;
    }
    if (key_of == last_key_of) {
        return Py_XNewRef(last_item);
    }
    PyObject *reduced = PyObject_CallMethod(key_of, "__reduce__", NULL); /* (itemgetter, items) */
    if (reduced == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *item = NULL;
    if (PyTuple_Check(reduced) && PyTuple_GET_SIZE(reduced) == 2) {
        PyObject *items = PyTuple_GET_ITEM(reduced, 1);
        if (PyTuple_Check(items) && PyTuple_GET_SIZE(items) == 1) {
            item = Py_NewRef(PyTuple_GET_ITEM(items, 0));
        }
    }
    Py_DECREF(reduced);
    Py_XSETREF(last_key_of, Py_NewRef(key_of));
    Py_XSETREF(last_item, Py_XNewRef(item));
    return item;
}

/* value[item], a new reference or NULL; a dict's found without the subscript protocol. */
static inline PyObject *
get_item(PyObject *value, PyObject *item)
{
    if (PyDict_CheckExact(value)) {
        PyObject *found = PyDict_GetItemWithError(value, item); /* borrowed */
        if (found != NULL) {
            return Py_NewRef(found);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_GetItem(value, item); /* also raises the KeyError a dict raises */
}

#endif

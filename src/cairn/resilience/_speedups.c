/*
 * cairn.resilience._speedups: a circuit breaker's decorated call, in C.
 *
 * `@breaker` in pure Python costs a Python frame per call before the protected
 * function even starts, and in the open state a rejection then pays for a
 * second frame's traceback entry. `bench/resilience.py` showed that no Python
 * wrapper can keep a rejection under a third of the fastest peer's overhead
 * (docs/benchmarks.md), so this module owns the two hot paths and nothing
 * else:
 *
 *   - CLOSED, plain breaker (consecutive failures, no result predicate): count
 *     the call, call the function, and on an Exception hand it to the
 *     breaker's own Python `_settle()`;
 *   - OPEN before its break ends: count the rejection and raise
 *     CircuitOpenError (for a coroutine function: when awaited).
 *
 * Every other state goes to the Python wrapper (`slow`), which holds the one
 * state machine. The breaker's fields are read straight from its __slots__
 * (their offsets are taken from the member descriptors once), so C and Python
 * always see the same state: nothing here keeps a copy.
 *
 * For a coroutine function the call returns an `Attempt`, an awaitable that,
 * like a native coroutine, does nothing until it is first awaited: the
 * breaker's decision is taken then, as the Python wrapper takes it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static PyObject *str_monotonic, *str_settle, *str_classify, *str_emit_rejected, *str_listeners,
    *str_qualname, *str_throw, *str_close, *float_zero, *int_zero;

/* ------------------------------------------------------------------------ */
/* Protected: the decorated function                                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *breaker;     /* the CircuitBreaker */
    PyObject *fn;          /* the protected function */
    PyObject *slow;        /* the Python wrapper: every path but the two above */
    PyObject *calls;       /* breaker._calls (an itertools.count) */
    PyObject *rejections;  /* breaker._rejections (an itertools.count) */
    PyObject *error;       /* CircuitOpenError */
    PyObject *open_state;  /* BreakerState.OPEN */
    PyObject *clock;       /* breaker.clock as it was when decorated */
    PyObject *listeners;   /* breaker._listeners (a tuple) */
    PyObject *events;      /* the globals of cairn.resilience._events */
    PyObject *dict;        /* __dict__: what functools.wraps copies, and .breaker */
    PyObject *weakrefs;
    Py_ssize_t off_token, off_state, off_open_until, off_failures, off_name;
    int is_async;
} Protected;

static PyTypeObject ProtectedType, AttemptType;

/* An exception being handled, fetched normalized with its traceback attached. */
typedef struct {
    PyObject *type, *value, *tb;
} Pending;

static void
pending_fetch(Pending *p)
{
    PyErr_Fetch(&p->type, &p->value, &p->tb);
    PyErr_NormalizeException(&p->type, &p->value, &p->tb);
    if (p->tb != NULL && p->value != NULL) {
        PyException_SetTraceback(p->value, p->tb);
    }
}

/* An error raised while `p` was being handled: `p` becomes its __context__. */
static void
chain(Pending *p)
{
    Pending now;
    pending_fetch(&now);
    if (now.value != NULL && p->value != NULL) {
        PyException_SetContext(now.value, p->value); /* steals the reference */
        p->value = NULL;
    }
    Py_XDECREF(p->type);
    Py_XDECREF(p->value);
    Py_XDECREF(p->tb);
    PyErr_Restore(now.type, now.value, now.tb);
}

/* Raise StopIteration carrying `value` (a tuple or an exception stays whole). */
static void
set_stop_iteration(PyObject *value)
{
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
}

/* The value of the StopIteration being raised (a new reference); the error is cleared. */
static PyObject *
fetch_stop_iteration_value(void)
{
    Pending p;
    pending_fetch(&p);
    PyObject *value = p.value != NULL ? PyObject_GetAttrString(p.value, "value") : Py_NewRef(Py_None);
    Py_XDECREF(p.type);
    Py_XDECREF(p.value);
    Py_XDECREF(p.tb);
    return value;
}

/* Record a failed admitted call: breaker._settle(token, breaker._classify(exc), 0.0).
 * The exception stays raised; an error inside settle is chained to it, as a
 * Python `except` block would. Returns with the error set in both cases. */
static void
settle_failure(Protected *self, PyObject *token)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return; /* BaseException (cancellation, exit): not the dependency's failure */
    }
    Pending p;
    pending_fetch(&p);
    PyObject *outcome = PyObject_CallMethodOneArg(self->breaker, str_classify, p.value);
    PyObject *done = NULL;
    if (outcome != NULL) {
        done = PyObject_CallMethodObjArgs(self->breaker, str_settle, token, outcome, float_zero,
                                          NULL);
        Py_DECREF(outcome);
    }
    if (done == NULL) {
        chain(&p);
        return;
    }
    Py_DECREF(done);
    PyErr_Restore(p.type, p.value, p.tb);
}

/* After a success: `if breaker._failures and token == breaker._fast_token:
 * breaker._failures = 0`. Returns -1 with an error set, else 0. */
static int
settle_success(Protected *self, PyObject *token)
{
    PyObject *b = self->breaker;
    PyObject *failures = SLOT(b, self->off_failures);
    if (failures == NULL || failures == int_zero) {
        return 0;
    }
    int nonzero = PyObject_IsTrue(failures);
    if (nonzero <= 0) {
        return nonzero;
    }
    PyObject *now = SLOT(b, self->off_token);
    if (now == NULL) {
        return 0;
    }
    int same = PyObject_RichCompareBool(token, now, Py_EQ);
    if (same <= 0) {
        return same;
    }
    PyObject *old = SLOT(b, self->off_failures);
    Py_INCREF(int_zero);
    SLOT(b, self->off_failures) = int_zero;
    Py_XDECREF(old);
    return 0;
}

/* The token of the lock-free CLOSED path, or NULL (no error) when not on it. */
static PyObject *
fast_token(Protected *self)
{
    PyObject *token = SLOT(self->breaker, self->off_token);
    if (token == NULL || !PyLong_CheckExact(token) || token == int_zero ||
        PyObject_IsTrue(token) != 1) {
        return NULL;
    }
    Py_INCREF(token);
    return token;
}

/* Step an itertools.count (the breaker's tally of calls or rejections). */
static int
count(PyObject *counter)
{
    PyObject *r = Py_TYPE(counter)->tp_iternext(counter);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* In OPEN before the break ends: the CircuitOpenError to raise (a new
 * reference), with the rejection counted and announced. NULL with no error:
 * not refused here, take the Python path. NULL with an error: that error. */
static PyObject *
refusal(Protected *self)
{
    PyObject *b = self->breaker;
    if (SLOT(b, self->off_state) != self->open_state) {
        return NULL;
    }
    PyObject *until = SLOT(b, self->off_open_until);
    if (until == NULL) {
        return NULL;
    }
    PyObject *monotonic = PyObject_GetAttr(self->clock, str_monotonic);
    if (monotonic == NULL) {
        return NULL;
    }
    PyObject *now = PyObject_CallNoArgs(monotonic);
    Py_DECREF(monotonic);
    if (now == NULL) {
        return NULL;
    }
    double wait = PyFloat_AsDouble(until);
    if (wait == -1.0 && PyErr_Occurred()) {
        Py_DECREF(now);
        return NULL;
    }
    double at = PyFloat_AsDouble(now);
    if (at == -1.0 && PyErr_Occurred()) {
        Py_DECREF(now);
        return NULL;
    }
    wait -= at;
    if (!(wait > 0)) {
        Py_DECREF(now);
        return NULL;
    }
    PyObject *seconds = PyFloat_FromDouble(wait);
    if (seconds == NULL || count(self->rejections) < 0) {
        Py_XDECREF(seconds);
        Py_DECREF(now);
        return NULL;
    }
    PyObject *everyone = PyDict_GetItemWithError(self->events, str_listeners); /* borrowed */
    if (everyone == NULL && PyErr_Occurred()) {
        Py_DECREF(seconds);
        Py_DECREF(now);
        return NULL;
    }
    if (PyObject_IsTrue(self->listeners) || (everyone != NULL && PyObject_IsTrue(everyone))) {
        PyObject *r = PyObject_CallMethodObjArgs(b, str_emit_rejected, self->open_state, seconds,
                                                 now, NULL);
        if (r == NULL) {
            Py_DECREF(seconds);
            Py_DECREF(now);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(now);
    PyObject *name = SLOT(b, self->off_name);
    PyObject *argv[3] = {name != NULL ? name : Py_None, self->open_state, seconds};
    PyObject *exc = PyObject_Vectorcall(self->error, argv, 3, NULL);
    Py_DECREF(seconds);
    return exc;
}

static PyObject *attempt_new(Protected *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames);

static PyObject *
protected_call(Protected *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (self->is_async) {
        return attempt_new(self, args, nargsf, kwnames);
    }
    PyObject *token = fast_token(self);
    if (token != NULL) {
        if (count(self->calls) < 0) {
            Py_DECREF(token);
            return NULL;
        }
        PyObject *result = PyObject_Vectorcall(self->fn, args, nargsf, kwnames);
        if (result == NULL) {
            settle_failure(self, token);
        }
        else if (settle_success(self, token) < 0) {
            Py_CLEAR(result);
        }
        Py_DECREF(token);
        return result;
    }
    PyObject *exc = refusal(self);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
protected_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"breaker", "fn", "slow", "calls", "rejections", "error",
                            "open_state", "clock", "listeners", "events", "is_async", NULL};
    PyObject *breaker, *fn, *slow, *calls, *rejections, *error, *open_state, *clock, *listeners,
        *events;
    int is_async;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOOO!O!p", names, &breaker, &fn, &slow,
                                     &calls, &rejections, &error, &open_state, &clock,
                                     &PyTuple_Type, &listeners, &PyDict_Type, &events,
                                     &is_async)) {
        return NULL;
    }
    if (!PyIter_Check(calls) || !PyIter_Check(rejections)) {
        PyErr_SetString(PyExc_TypeError, "calls and rejections must be iterators");
        return NULL;
    }
    if (!PyType_Check(error) || !PyType_IsSubtype((PyTypeObject *)error,
                                                  (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "error must be an Exception class");
        return NULL;
    }
    Py_ssize_t offsets[5];
    static const char *slots[5] = {"_fast_token", "_state", "_open_until", "_failures", "name"};
    for (int i = 0; i < 5; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)Py_TYPE(breaker), slots[i]);
        if (d == NULL) {
            return NULL;
        }
        int is_slot = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                      ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        offsets[i] = is_slot ? ((PyMemberDescrObject *)d)->d_member->offset : -1;
        Py_DECREF(d);
        if (!is_slot) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", Py_TYPE(breaker)->tp_name,
                         slots[i]);
            return NULL;
        }
    }
    Protected *self = (Protected *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = (vectorcallfunc)protected_call;
    self->breaker = Py_NewRef(breaker);
    self->fn = Py_NewRef(fn);
    self->slow = Py_NewRef(slow);
    self->calls = Py_NewRef(calls);
    self->rejections = Py_NewRef(rejections);
    self->error = Py_NewRef(error);
    self->open_state = Py_NewRef(open_state);
    self->clock = Py_NewRef(clock);
    self->listeners = Py_NewRef(listeners);
    self->events = Py_NewRef(events);
    self->off_token = offsets[0];
    self->off_state = offsets[1];
    self->off_open_until = offsets[2];
    self->off_failures = offsets[3];
    self->off_name = offsets[4];
    self->is_async = is_async;
    return (PyObject *)self;
}

static int
protected_traverse(Protected *self, visitproc visit, void *arg)
{
    Py_VISIT(self->breaker);
    Py_VISIT(self->fn);
    Py_VISIT(self->slow);
    Py_VISIT(self->calls);
    Py_VISIT(self->rejections);
    Py_VISIT(self->error);
    Py_VISIT(self->open_state);
    Py_VISIT(self->clock);
    Py_VISIT(self->listeners);
    Py_VISIT(self->events);
    Py_VISIT(self->dict);
    return 0;
}

static int
protected_clear(Protected *self)
{
    Py_CLEAR(self->breaker);
    Py_CLEAR(self->fn);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->calls);
    Py_CLEAR(self->rejections);
    Py_CLEAR(self->error);
    Py_CLEAR(self->open_state);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->listeners);
    Py_CLEAR(self->events);
    Py_CLEAR(self->dict);
    return 0;
}

static void
protected_dealloc(Protected *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    protected_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Bound like a function: a decorated method gets its instance. */
static PyObject *
protected_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
qualname_of(Protected *self)
{
    PyObject *q = self->dict ? PyDict_GetItemWithError(self->dict, str_qualname) : NULL;
    if (q == NULL && !PyErr_Occurred()) {
        q = PyObject_GetAttr(self->fn, str_qualname);
        return q;
    }
    Py_XINCREF(q);
    return q;
}

static PyObject *
protected_repr(Protected *self)
{
    PyObject *q = qualname_of(self);
    if (q == NULL) {
        PyErr_Clear();
        return PyUnicode_FromFormat("<circuit-protected function at %p>", self);
    }
    PyObject *r = PyUnicode_FromFormat("<circuit-protected function %S at %p>", q, self);
    Py_DECREF(q);
    return r;
}

/* Pickled by name, as a module-level function is. */
static PyObject *
protected_reduce(Protected *self, PyObject *Py_UNUSED(ignored))
{
    return qualname_of(self);
}

static PyMethodDef protected_methods[] = {
    {"__reduce__", (PyCFunction)protected_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* isinstance(f, types.FunctionType) holds, as for the Python wrapper: tools
 * that tell functions from other callables (Starlette's routes, inspect's
 * isfunction) treat the protected function as the function it is. type(f)
 * still names this type. */
static PyObject *
protected_class(PyObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef((PyObject *)&PyFunction_Type);
}

static PyGetSetDef protected_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"__class__", protected_class, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProtectedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cairn.resilience._speedups.Protected",
    .tp_doc = "A function protected by a circuit breaker (the fast paths in C).",
    .tp_basicsize = sizeof(Protected),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = protected_new,
    .tp_dealloc = (destructor)protected_dealloc,
    .tp_traverse = (traverseproc)protected_traverse,
    .tp_clear = (inquiry)protected_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Protected, vectorcall),
    .tp_descr_get = protected_get,
    .tp_repr = (reprfunc)protected_repr,
    .tp_dictoffset = offsetof(Protected, dict),
    .tp_weaklistoffset = offsetof(Protected, weakrefs),
    .tp_methods = protected_methods,
    .tp_getset = protected_getset,
};

/* ------------------------------------------------------------------------ */
/* Attempt: one call of a protected coroutine function                       */
/* ------------------------------------------------------------------------ */

enum { NOT_STARTED, RUNNING, DONE };

typedef struct {
    PyObject_HEAD
    Protected *protected;
    PyObject *args;     /* positional then keyword values, until started */
    PyObject *kwnames;  /* or NULL */
    Py_ssize_t nargs;
    PyObject *inner;    /* the awaited iterator, once started */
    PyObject *token;    /* the CLOSED token, or NULL when the Python path runs it */
    int state;
} Attempt;

static PyObject *
attempt_new(Protected *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *values = PyTuple_New(total);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < total; i++) {
        PyTuple_SET_ITEM(values, i, Py_NewRef(args[i]));
    }
    Attempt *a = PyObject_GC_New(Attempt, &AttemptType);
    if (a == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    a->protected = (Protected *)Py_NewRef(self);
    a->args = values;
    a->kwnames = Py_XNewRef(kwnames);
    a->nargs = nargs;
    a->inner = NULL;
    a->token = NULL;
    a->state = NOT_STARTED;
    PyObject_GC_Track(a);
    return (PyObject *)a;
}

/* What `await x` iterates: a native coroutine itself, else x.__await__(). */
static PyObject *
awaitable_iter(PyObject *o)
{
    if (PyCoro_CheckExact(o)) {
        return Py_NewRef(o);
    }
    PyAsyncMethods *am = Py_TYPE(o)->tp_as_async;
    if (am != NULL && am->am_await != NULL) {
        PyObject *it = am->am_await(o);
        if (it != NULL && !PyIter_Check(it)) {
            PyErr_Format(PyExc_TypeError, "__await__() returned non-iterator of type '%.100s'",
                         Py_TYPE(it)->tp_name);
            Py_CLEAR(it);
        }
        return it;
    }
    PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression",
                 Py_TYPE(o)->tp_name);
    return NULL;
}

/* The decision, taken at the first step as the Python wrapper takes it when its
 * body starts: the CLOSED fast path, a refusal, or the Python wrapper's
 * coroutine. Returns -1 with an error set (to be raised by this step). */
static int
attempt_start(Attempt *a)
{
    Protected *p = a->protected;
    PyObject *const *argv = ((PyTupleObject *)a->args)->ob_item;
    PyObject *token = fast_token(p);
    PyObject *awaitable;
    if (token != NULL) {
        if (count(p->calls) < 0) {
            Py_DECREF(token);
            return -1;
        }
        a->token = token;
        awaitable = PyObject_Vectorcall(p->fn, argv, a->nargs, a->kwnames);
    }
    else {
        PyObject *exc = refusal(p);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
            return -1;
        }
        if (PyErr_Occurred()) {
            return -1;
        }
        awaitable = PyObject_Vectorcall(p->slow, argv, a->nargs, a->kwnames);
    }
    Py_CLEAR(a->args);
    Py_CLEAR(a->kwnames);
    if (awaitable != NULL) {
        a->inner = awaitable_iter(awaitable);
        Py_DECREF(awaitable);
    }
    if (a->inner == NULL) {
        if (a->token != NULL) {
            settle_failure(p, a->token);
        }
        return -1;
    }
    return 0;
}

/* An inner step's outcome, judged: a return settles a success, an error a failure. */
static PySendResult
attempt_judge(Attempt *a, PySendResult r, PyObject **result)
{
    if (r == PYGEN_NEXT) {
        return r;
    }
    a->state = DONE;
    Py_CLEAR(a->inner);
    if (a->token != NULL) {
        if (r == PYGEN_RETURN) {
            if (settle_success(a->protected, a->token) < 0) {
                Py_CLEAR(*result);
                r = PYGEN_ERROR;
            }
        }
        else {
            settle_failure(a->protected, a->token);
        }
        Py_CLEAR(a->token);
    }
    return r;
}

static PySendResult
attempt_send(Attempt *a, PyObject *arg, PyObject **result)
{
    *result = NULL;
    if (a->state == DONE) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return PYGEN_ERROR;
    }
    if (a->state == NOT_STARTED) {
        a->state = RUNNING;
        if (arg != Py_None) {
            a->state = NOT_STARTED; /* as a coroutine: it may still be started */
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            return PYGEN_ERROR;
        }
        if (attempt_start(a) < 0) {
            a->state = DONE;
            Py_CLEAR(a->args);
            Py_CLEAR(a->kwnames);
            Py_CLEAR(a->token);
            return PYGEN_ERROR;
        }
    }
    return attempt_judge(a, PyIter_Send(a->inner, arg, result), result);
}

/* For callers that step by hand: next() and send() raise StopIteration(value). */
static PyObject *
attempt_step(Attempt *a, PyObject *arg)
{
    PyObject *result;
    PySendResult r = attempt_send(a, arg, &result);
    if (r == PYGEN_RETURN) {
        if (result == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        else {
            set_stop_iteration(result);
        }
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
attempt_iternext(Attempt *a)
{
    return attempt_step(a, Py_None);
}

static PyObject *
attempt_send_method(Attempt *a, PyObject *arg)
{
    return attempt_step(a, arg);
}

static PyObject *
attempt_throw(Attempt *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    if (a->state != RUNNING) {
        /* As a native coroutine: thrown in before it starts (or after it ends),
         * the exception comes straight back and nothing runs. */
        a->state = DONE;
        Py_CLEAR(a->args);
        Py_CLEAR(a->kwnames);
        PyObject *typ = args[0];
        PyObject *val = nargs > 1 ? args[1] : NULL;
        if (PyExceptionInstance_Check(typ)) {
            PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
        }
        else if (PyExceptionClass_Check(typ)) {
            PyErr_SetObject(typ, val == Py_None ? NULL : val);
        }
        else {
            PyErr_SetString(PyExc_TypeError,
                            "exceptions must be classes or instances deriving from BaseException");
        }
        return NULL;
    }
    PyObject *throw = PyObject_GetAttr(a->inner, str_throw);
    if (throw == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(throw, args, nargs, NULL);
    Py_DECREF(throw);
    if (result != NULL) {
        return result; /* the inner awaitable went on and yielded */
    }
    PyObject *value = NULL;
    PySendResult r = PYGEN_ERROR;
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        value = fetch_stop_iteration_value();
        if (value != NULL) {
            r = PYGEN_RETURN;
        }
    }
    r = attempt_judge(a, r, &value);
    if (r == PYGEN_RETURN) {
        set_stop_iteration(value);
        Py_DECREF(value);
    }
    return NULL;
}

static PyObject *
attempt_close(Attempt *a, PyObject *Py_UNUSED(ignored))
{
    int state = a->state;
    a->state = DONE;
    Py_CLEAR(a->args);
    Py_CLEAR(a->kwnames);
    if (state != RUNNING || a->inner == NULL) {
        Py_RETURN_NONE;
    }
    /* Closed mid-flight (the awaiting task was torn down): the call neither
     * failed nor succeeded, as with the Python wrapper's GeneratorExit. */
    Py_CLEAR(a->token);
    PyObject *inner = a->inner;
    a->inner = NULL;
    PyObject *r = PyObject_CallMethodNoArgs(inner, str_close);
    Py_DECREF(inner);
    return r;
}

static PyObject *
attempt_await(PyObject *self)
{
    return Py_NewRef(self);
}

static int
attempt_traverse(Attempt *a, visitproc visit, void *arg)
{
    Py_VISIT(a->protected);
    Py_VISIT(a->args);
    Py_VISIT(a->kwnames);
    Py_VISIT(a->inner);
    Py_VISIT(a->token);
    return 0;
}

static int
attempt_clear(Attempt *a)
{
    Py_CLEAR(a->protected);
    Py_CLEAR(a->args);
    Py_CLEAR(a->kwnames);
    Py_CLEAR(a->inner);
    Py_CLEAR(a->token);
    return 0;
}

static void
attempt_dealloc(Attempt *a)
{
    PyObject_GC_UnTrack(a);
    attempt_clear(a);
    PyObject_GC_Del(a);
}

static PyAsyncMethods attempt_async = {
    .am_await = attempt_await,
    .am_send = (sendfunc)attempt_send,
};

/* Named after the function, as a coroutine is (asyncio's task reprs read these). */
static PyObject *
attempt_qualname(Attempt *a, void *Py_UNUSED(closure))
{
    return qualname_of(a->protected);
}

static PyObject *
attempt_name(Attempt *a, void *Py_UNUSED(closure))
{
    return PyObject_GetAttrString((PyObject *)a->protected, "__name__");
}

static PyObject *
attempt_repr(Attempt *a)
{
    PyObject *q = qualname_of(a->protected);
    if (q == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<circuit-protected call %S at %p>", q, a);
    Py_DECREF(q);
    return r;
}

static PyGetSetDef attempt_getset[] = {
    {"__qualname__", (getter)attempt_qualname, NULL, NULL, NULL},
    {"__name__", (getter)attempt_name, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef attempt_methods[] = {
    {"send", (PyCFunction)attempt_send_method, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))attempt_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)attempt_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AttemptType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cairn.resilience._speedups.Attempt",
    .tp_doc = "One call of a circuit-protected coroutine function: await it.",
    .tp_basicsize = sizeof(Attempt),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)attempt_dealloc,
    .tp_traverse = (traverseproc)attempt_traverse,
    .tp_clear = (inquiry)attempt_clear,
    .tp_as_async = &attempt_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)attempt_iternext,
    .tp_methods = attempt_methods,
    .tp_getset = attempt_getset,
    .tp_repr = (reprfunc)attempt_repr,
};

/* ------------------------------------------------------------------------ */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cairn.resilience._speedups",
    .m_doc = "The circuit breaker's decorated call, in C (see _breaker.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&ProtectedType) < 0 || PyType_Ready(&AttemptType) < 0) {
        return NULL;
    }
#define INTERN(var, text)                                  \
    if ((var = PyUnicode_InternFromString(text)) == NULL) { \
        return NULL;                                       \
    }
    INTERN(str_monotonic, "monotonic");
    INTERN(str_settle, "_settle");
    INTERN(str_classify, "_classify");
    INTERN(str_emit_rejected, "_emit_rejected");
    INTERN(str_listeners, "_listeners");
    INTERN(str_qualname, "__qualname__");
    INTERN(str_throw, "throw");
    INTERN(str_close, "close");
#undef INTERN
    if ((float_zero = PyFloat_FromDouble(0.0)) == NULL || (int_zero = PyLong_FromLong(0)) == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Protected", (PyObject *)&ProtectedType) < 0 ||
        PyModule_AddObjectRef(m, "Attempt", (PyObject *)&AttemptType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

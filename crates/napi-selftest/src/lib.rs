//! Test-only addon: one export per feature of the `napi` crate, so
//! `packages/native/test/napi.test.ts` can check them from JS against a real
//! node. Kept out of the product addon (`crates/native`) on purpose: nothing
//! here is useful to Quark itself (a function that panics, a probe class).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::{
    BigUint64, BufferView, Bytes, CallContext, Env, Error, ExternalMemory, Function, NativeClass, Result, Value,
};

mod region;
use region::Region;

static PROBES_CREATED: AtomicUsize = AtomicUsize::new(0);
static PROBES_FINALIZED: AtomicUsize = AtomicUsize::new(0);

/// A class whose instances count their own finalization.
struct Probe {
    label: String,
    calls: std::cell::Cell<u32>,
}

impl NativeClass for Probe {
    const NAME: &'static str = "Probe";
}

impl Drop for Probe {
    fn drop(&mut self) {
        PROBES_FINALIZED.fetch_add(1, Ordering::SeqCst);
    }
}

/// A class owning a shared (mmap'd) memory region.
struct SharedRegion {
    region: Arc<Region>,
}

impl NativeClass for SharedRegion {
    const NAME: &'static str = "SharedRegion";
}

fn sleep_ms(ms: u32) {
    std::thread::sleep(Duration::from_millis(ms.into()));
}

fn check_args<'c>(cx: &CallContext<'c>) -> Result<Value<'c>> {
    let name: String = cx.arg(0, "name")?;
    let count: u32 = cx.arg(1, "count")?;
    let flag: bool = cx.arg(2, "flag")?;
    let data: BufferView = cx.arg(3, "data")?;
    let optional: Option<i32> = cx.arg(4, "optional")?;
    let out = cx.env().object()?;
    out.set("name", name)?;
    out.set("count", count)?;
    out.set("flag", flag)?;
    out.set("length", data.len())?;
    out.set("sum", data.as_slice().iter().map(|&b| u32::from(b)).sum::<u32>())?;
    out.set("optional", optional)?;
    Ok(out)
}

fn init<'e>(env: &'e Env, exports: Value<'e>) -> Result<()> {
    exports.set_function("checkArgs", check_args)?;

    exports.set_function("strings", |cx| {
        let list: Vec<String> = cx.arg(0, "list")?;
        cx.ret(list.into_iter().map(|s| s.to_uppercase()).collect::<Vec<_>>())
    })?;

    exports.set_function("bigAdd", |cx| {
        let a: BigUint64 = cx.arg(0, "a")?;
        let b: BigUint64 = cx.arg(1, "b")?;
        let sum =
            a.0.checked_add(b.0)
                .ok_or_else(|| Error::range_error("sum overflows 64 bits").with_code("ERR_OUT_OF_RANGE"))?;
        cx.ret(BigUint64(sum))
    })?;

    exports.set_function("echoBytes", |cx| {
        let Bytes(mut bytes) = cx.arg(0, "bytes")?;
        bytes.reverse();
        cx.ret(Bytes(bytes))
    })?;

    exports.set_function("callTwice", |cx| {
        let f: Function = cx.arg(0, "callback")?;
        let x: f64 = cx.arg(1, "x")?;
        let once: f64 = f.call(&[cx.env().number(x)?])?.to()?;
        let twice = f.call(&[cx.env().number(once)?])?;
        Ok(twice)
    })?;

    exports.set_function("throwOs", |cx| {
        let errno: i32 = cx.arg(0, "errno")?;
        let path: Option<String> = cx.arg(1, "path")?;
        Err(Error::os(errno, "selftest", path.as_deref()))
    })?;

    exports.set_function("panicNow", |cx| {
        let message: String = cx.arg(0, "message")?;
        panic!("{message}");
    })?;

    let probe = env
        .class::<Probe>(|cx| {
            let label: String = cx.arg(0, "label")?;
            PROBES_CREATED.fetch_add(1, Ordering::SeqCst);
            Ok(Probe { label, calls: std::cell::Cell::new(0) })
        })
        .method("label", |cx, this| {
            this.calls.set(this.calls.get() + 1);
            cx.ret(this.label.as_str())
        })
        .getter("calls", |cx, this| cx.ret(this.calls.get()))
        .static_method("stats", |cx| {
            let stats = cx.env().object()?;
            stats.set("created", PROBES_CREATED.load(Ordering::SeqCst))?;
            stats.set("finalized", PROBES_FINALIZED.load(Ordering::SeqCst))?;
            Ok(stats)
        })
        .build()?;
    exports.set("Probe", probe)?;

    exports.set_function("labelOf", |cx| {
        let probe: &Probe = cx.arg(0, "probe")?;
        cx.ret(probe.label.as_str())
    })?;

    exports.set_function("resolveAfter", |cx| {
        let ms: u32 = cx.arg(0, "ms")?;
        let value: String = cx.arg(1, "value")?;
        let thread = std::thread::current().id();
        cx.env().spawn_promise("selftest-resolve", move || {
            sleep_ms(ms);
            // Prove the work ran on another thread than the JS one.
            assert_ne!(std::thread::current().id(), thread);
            Ok(format!("{value} from a Rust thread"))
        })
    })?;

    exports.set_function("rejectAfter", |cx| {
        let ms: u32 = cx.arg(0, "ms")?;
        let errno: i32 = cx.arg(1, "errno")?;
        cx.env().spawn_promise("selftest-reject", move || -> Result<()> {
            sleep_ms(ms);
            Err(Error::os(errno, "selftest", Some("/nowhere")))
        })
    })?;

    exports.set_function("panicInThread", |cx| {
        let message: String = cx.arg(0, "message")?;
        cx.env().spawn_promise("selftest-panic", move || -> Result<()> { panic!("{message}") })
    })?;

    exports.set_function("dropPromise", |cx| {
        let (deferred, promise) = cx.env().promise()?;
        std::thread::spawn(move || drop(deferred));
        Ok(promise)
    })?;

    exports.set_function("settleWithObject", |cx| {
        let (deferred, promise) = cx.env().promise()?;
        std::thread::spawn(move || {
            deferred.settle_with(|env| {
                let o = env.object()?;
                o.set("thread", "rust")?;
                Ok(o)
            })
        });
        Ok(promise)
    })?;

    let region = env
        .class::<SharedRegion>(|cx| {
            let len: usize = cx.arg(0, "length")?;
            let region = Region::map(len).map_err(|e| Error::from_io(&e, "mmap", None))?;
            Ok(SharedRegion { region: Arc::new(region) })
        })
        .method("arrayBuffer", |cx, this| cx.env().external_arraybuffer(this.region.clone()))
        .method("writeLater", |cx, this| {
            let delay: u32 = cx.arg(0, "delayMs")?;
            let offset: usize = cx.arg(1, "offset")?;
            let value: u32 = cx.arg(2, "value")?;
            if !offset.is_multiple_of(4) || offset + 4 > this.region.len() {
                return Err(Error::range_error(format!(
                    "offset {offset} must be 4-aligned and leave 4 bytes in the {}-byte region",
                    this.region.len()
                ))
                .with_code("ERR_OUT_OF_RANGE"));
            }
            let region = this.region.clone();
            std::thread::spawn(move || {
                sleep_ms(delay);
                region.word(offset).store(value, Ordering::SeqCst);
            });
            cx.ret(())
        })
        .method("fill", |cx, this| {
            let byte: u8 = cx.arg(0, "byte")?;
            let region = this.region.clone();
            cx.env().spawn_promise("selftest-fill", move || {
                region.fill(byte);
                Ok(region.len())
            })
        })
        .static_method("stats", |cx| {
            let stats = cx.env().object()?;
            stats.set("mapped", region::MAPPED.load(Ordering::SeqCst))?;
            stats.set("unmapped", region::UNMAPPED.load(Ordering::SeqCst))?;
            Ok(stats)
        })
        .build()?;
    exports.set("SharedRegion", region)?;

    // Used by the scope test: creates many handles inside nested scopes.
    exports.set_function("sumInScopes", |cx| {
        let n: u32 = cx.arg(0, "n")?;
        let env = cx.env();
        let mut total = 0f64;
        for i in 0..n {
            total += env.scope(|inner| -> Result<f64> { inner.number(f64::from(i))?.to() })??;
        }
        cx.ret(total)
    })?;

    // A Rust thread calls a JS callback `n` times through a JsThread, then resolves with what it returned.
    exports.set_function("callFromThread", |cx| {
        let callback: Function = cx.arg(0, "callback")?;
        let n: u32 = cx.arg(1, "n")?;
        let env = cx.env();
        let thread = env.js_thread()?;
        let callback = Arc::new(thread.persist(*callback)?);
        let (deferred, promise) = env.promise()?;
        std::thread::spawn(move || {
            let results = Arc::new(Mutex::new(Vec::new()));
            for i in 0..n {
                let (callback, results) = (callback.clone(), results.clone());
                let queued = thread.run(move |env| {
                    let returned: f64 = callback.get(env)?.call(&[env.number(f64::from(i))?])?.to()?;
                    results.lock().unwrap_or_else(|p| p.into_inner()).push(returned);
                    Ok(())
                });
                if let Err(e) = queued {
                    return deferred.reject(e);
                }
            }
            // Runs after every callback above: the queue is FIFO.
            let _ = thread.run(move |_env| {
                deferred.resolve(results.lock().unwrap_or_else(|p| p.into_inner()).clone());
                Ok(())
            });
        });
        Ok(promise)
    })?;

    exports.set("answer", 42)?;
    let counter = Arc::new(AtomicU32::new(0));
    exports.set_function("count", move |cx| cx.ret(counter.fetch_add(1, Ordering::SeqCst) + 1))?;
    Ok(())
}

napi::module!(init);

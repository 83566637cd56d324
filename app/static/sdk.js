/*
 * event-postback web SDK: mints a lead on a visitor's first page and fires events for it.
 *
 *   <script src="https://events.example.com/sdk.js" data-cid="cmp_9z8y7x6w"></script>
 *   <button data-ep-event="sale_completed" data-ep-revenue="45.00">Buy</button>
 *   <script>EventPostback.track("quote_viewed").then(function (answer) { ... });</script>
 *
 * Events fired from markup announce their answer with an "eventpostback:answer" DOM event
 * on the element (it bubbles), whose detail is {event_id, answer}.
 *
 * Nothing here throws into the page: every call returns a Promise that resolves with the
 * server's answer, or with {status: 0, type: "error", message} when none could be had.
 */
(function (window, document) {
  "use strict";

  var KEEP_DAYS = 30;
  var RETRY_DELAYS_MS = [500, 1500, 4000];
  var URL_FIELDS = [
    "pid", "sub1", "sub2", "sub3", "sub4", "sub5", "adv1", "adv2", "adv3", "adv4", "adv5",
    "utm_source", "utm_medium", "utm_campaign", "utm_adgroup", "utm_matchtype", "utm_term",
    "utm_content", "utm_creative", "utm_placement", "external_clickid", "clid"
  ];

  var script = document.currentScript;
  var state = {
    cid: null,
    endpoint: script && script.src ? new URL(script.src).origin : "",
    lead: null,        // Promise of {transaction_id, pid}
    leaving: false,    // pagehide has begun: only sendBeacon still gets through
    waiting: []        // events between a failed try and their retry
  };
  var onInit = [];

  function failure(message) {
    return {status: 0, type: "error", message: String(message)};
  }

  function guarded(fn, fallback) {
    try {
      return fn();
    } catch (error) {
      return fallback(error);
    }
  }

  function storageKey() {
    return "ep_txn_" + state.cid;
  }

  function readStored() {
    var record = guarded(function () {
      return JSON.parse(window.localStorage.getItem(storageKey()) || "null");
    }, function () { return null; });
    if (record && record.expires > Date.now() && record.transaction_id) {
      return record;
    }
    var match = document.cookie.match(new RegExp("(?:^|; )" + storageKey() + "=([^;]*)"));
    if (match) {
      var parts = decodeURIComponent(match[1]).split("|");
      return {transaction_id: parts[0], pid: parts[1] || null};
    }
    return null;
  }

  function store(lead) {
    var expires = Date.now() + KEEP_DAYS * 86400 * 1000;
    guarded(function () {
      window.localStorage.setItem(storageKey(), JSON.stringify({
        transaction_id: lead.transaction_id, pid: lead.pid, expires: expires
      }));
    }, function () {});
    document.cookie = storageKey() + "=" +
      encodeURIComponent(lead.transaction_id + "|" + (lead.pid || "")) +
      "; max-age=" + KEEP_DAYS * 86400 + "; path=/; SameSite=Lax";
  }

  function pageFields() {
    var params = new URLSearchParams(window.location.search);
    var fields = {};
    URL_FIELDS.forEach(function (name) {
      var value = params.get(name);
      if (value) {
        fields[name] = value;
      }
    });
    return {fields: fields, transactionId: params.get("transaction_id")};
  }

  function wait(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  // A fresh Idempotency-Key per tracked event, the same on its retries: a retry whose
  // first try was stored gets that try's answer instead of a 403 lock.
  function newKey() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  // JSON sent as text/plain, so the same body works for fetch(keepalive) and sendBeacon.
  // The Idempotency-Key header makes an event's request need a CORS preflight, which the
  // browser caches (Access-Control-Max-Age).
  function post(path, body, job) {
    var attempt = 0;
    function once() {
      if (state.leaving) {
        return beacon(path, body);
      }
      return fetch(state.endpoint + path, {
        method: "POST",
        body: JSON.stringify(body),
        headers: job && job.key
          ? {"Content-Type": "text/plain;charset=UTF-8", "Idempotency-Key": job.key}
          : {"Content-Type": "text/plain;charset=UTF-8"},
        keepalive: true,
        credentials: "omit"
      }).then(function (response) {
        return response.json().catch(function () {
          return failure("HTTP " + response.status);
        }).then(function (answer) {
          answer.status = response.status;
          return answer;
        });
      }, function (error) {
        return failure(error && error.message || "network error");
      }).then(function (answer) {
        // 4xx answers are final: a 403 lock or a 400 duplicate will not change on retry.
        var passing = answer.status === 0 || answer.status >= 500;
        if (!passing || attempt >= RETRY_DELAYS_MS.length) {
          return answer;
        }
        var delay = RETRY_DELAYS_MS[attempt++];
        if (job) {
          state.waiting.push(job);
        }
        return wait(delay).then(function () {
          if (job) {
            state.waiting.splice(state.waiting.indexOf(job), 1);
            if (job.beaconed) {
              return {status: 0, type: "beacon", message: "Sent with navigator.sendBeacon"};
            }
          }
          return once();
        });
      });
    }
    return once();
  }

  function beacon(path, body) {
    var sent = guarded(function () {
      var blob = new Blob([JSON.stringify(body)], {type: "text/plain;charset=UTF-8"});
      return navigator.sendBeacon(state.endpoint + path, blob);
    }, function () { return false; });
    return Promise.resolve(sent
      ? {status: 0, type: "beacon", message: "Sent with navigator.sendBeacon"}
      : failure("sendBeacon refused the event"));
  }

  function lead() {
    if (state.lead) {
      return state.lead;
    }
    var page = pageFields();
    var known = readStored();
    var newSource = page.fields.pid && known && page.fields.pid !== known.pid;
    if (page.transactionId) {
      known = {transaction_id: page.transactionId, pid: page.fields.pid || null};
      store(known);
    }
    if (known && !newSource) {
      state.lead = Promise.resolve(known);
      return state.lead;
    }
    var click = Object.assign({cid: state.cid}, page.fields);
    state.lead = post("/api/click", click, null).then(function (answer) {
      if (answer.type !== "success") {
        state.lead = null;  // try again on the next event
        throw answer;
      }
      store(answer.data);
      return answer.data;
    });
    return state.lead;
  }

  function track(eventId, fields) {
    return guarded(function () {
      if (!state.cid) {
        return Promise.resolve(failure("EventPostback.init({cid}) was not called"));
      }
      return lead().then(function (known) {
        var body = Object.assign({}, fields || {}, {
          cid: state.cid, event_id: eventId, transaction_id: known.transaction_id
        });
        if (known.pid) {
          body.pid = known.pid;  // the lead's source, so the event is credited to it
        }
        var job = {body: body, beaconed: false, key: newKey()};
        return post("/api/event/trigger", body, job);
      }, function (answer) {
        return answer && answer.type ? answer : failure(answer);
      });
    }, function (error) {
      return Promise.resolve(failure(error));
    });
  }

  function revenueOf(element) {
    var revenue = element.getAttribute("data-ep-revenue");
    return revenue ? {revenue: revenue} : {};
  }

  // Markup has no Promise to hand back, so its answers arrive as a DOM event that bubbles
  // from the element: document.addEventListener("eventpostback:answer", ...).
  function trackFrom(element, eventId) {
    track(eventId, revenueOf(element)).then(function (answer) {
      guarded(function () {
        element.dispatchEvent(new CustomEvent("eventpostback:answer", {
          bubbles: true, detail: {event_id: eventId, answer: answer}
        }));
      }, function () {});
    });
  }

  function wireMarkup() {
    document.querySelectorAll("[data-ep-event-view]").forEach(function (element) {
      trackFrom(element, element.getAttribute("data-ep-event-view"));
    });
    document.addEventListener("click", function (event) {
      guarded(function () {
        var element = event.target.closest && event.target.closest("[data-ep-event]");
        if (element) {
          trackFrom(element, element.getAttribute("data-ep-event"));
        }
      }, function () {});
    }, true);
  }

  function init(options) {
    return guarded(function () {
      if (!options || !options.cid) {
        return Promise.resolve(failure("init needs a cid"));
      }
      if (state.cid) {
        return lead().catch(function (answer) { return answer; });
      }
      state.cid = options.cid;
      if (options.endpoint) {
        state.endpoint = String(options.endpoint).replace(/\/+$/, "");
      }
      var ready = lead().catch(function (answer) { return answer; });
      onInit.splice(0).forEach(function (run) { run(); });
      return ready;
    }, function (error) {
      return Promise.resolve(failure(error));
    });
  }

  // Events still waiting for a retry go out as beacons: a page being left cannot wait.
  window.addEventListener("pagehide", function () {
    state.leaving = true;
    state.waiting.forEach(function (job) {
      job.beaconed = true;
      beacon("/api/event/trigger", job.body);
    });
  });
  window.addEventListener("pageshow", function () {
    state.leaving = false;
  });

  onInit.push(function () {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", wireMarkup);
    } else {
      wireMarkup();
    }
  });

  window.EventPostback = {
    init: init,
    track: track,
    transactionId: function () {
      var known = state.cid ? readStored() : null;
      return known ? known.transaction_id : null;
    }
  };

  var autoCid = script && script.getAttribute("data-cid");
  if (autoCid) {
    init({cid: autoCid, endpoint: script.getAttribute("data-endpoint") || undefined});
  }
})(window, document);

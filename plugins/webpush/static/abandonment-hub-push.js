/* abandonment-hub web push: subscribe this browser to cart reminders.
 *
 * Load it on the shop's pages (or paste it), then call from a click handler, since
 * browsers only show the permission prompt after a user gesture:
 *
 *   AbandonmentHubPush.subscribe({
 *     hubUrl: "https://hub.example.com",
 *     tenant: "acme",
 *     checkoutId: "cs_test_a1B2c3",          // the platform's checkout id
 *     serviceWorker: "/abandonment-hub-sw.js" // served from the shop's own origin
 *   });
 *
 * E-mail and customer-id bindings need an HMAC computed by the shop's server
 * (emailHmac / customerIdHmac, see docs/webpush.md).
 */
(function (global) {
  "use strict";

  function base64UrlToBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    base64 += "===".slice((base64.length + 3) % 4);
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function sameKey(buffer, bytes) {
    if (!buffer) return false;
    var current = new Uint8Array(buffer);
    if (current.length !== bytes.length) return false;
    for (var i = 0; i < bytes.length; i++) if (current[i] !== bytes[i]) return false;
    return true;
  }

  function endpointBase(options) {
    return options.hubUrl.replace(/\/+$/, "") + "/plugins/webpush/" +
      encodeURIComponent(options.tenant);
  }

  async function subscribe(options) {
    if (!("serviceWorker" in navigator) || !("PushManager" in global) ||
        !("Notification" in global)) {
      return { subscribed: false, reason: "unsupported" };
    }
    // ask first, while the click's user activation is still fresh (Safari needs that)
    var permission = await Notification.requestPermission();
    if (permission !== "granted") return { subscribed: false, reason: permission };

    var base = endpointBase(options);
    await navigator.serviceWorker.register(options.serviceWorker || "/abandonment-hub-sw.js");
    var registration = await navigator.serviceWorker.ready;
    var keyAnswer = await fetch(base + "/vapid-public-key");
    if (!keyAnswer.ok) return { subscribed: false, reason: "hub answered " + keyAnswer.status };
    var key = base64UrlToBytes((await keyAnswer.json()).application_server_key);

    var subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
      await subscription.unsubscribe(); // made with an older key: it can never receive ours
      subscription = null;
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: key
      });
    }

    var body = { subscription: subscription.toJSON() };
    if (options.checkoutId) body.checkout_id = String(options.checkoutId);
    if (options.email) {
      body.email = options.email;
      body.email_hmac = options.emailHmac;
    }
    if (options.customerId) {
      body.customer_id = String(options.customerId);
      body.customer_id_hmac = options.customerIdHmac;
    }
    var answer = await fetch(base + "/subscriptions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    });
    return { subscribed: answer.ok, status: answer.status };
  }

  async function unsubscribe(options) {
    if (!("serviceWorker" in navigator)) return { unsubscribed: false };
    var registration = await navigator.serviceWorker.getRegistration(
      options.serviceWorker || "/abandonment-hub-sw.js");
    var subscription = registration && (await registration.pushManager.getSubscription());
    if (!subscription) return { unsubscribed: false };
    await fetch(endpointBase(options) + "/subscriptions", {
      method: "DELETE",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ endpoint: subscription.endpoint })
    });
    return { unsubscribed: await subscription.unsubscribe() };
  }

  global.AbandonmentHubPush = { subscribe: subscribe, unsubscribe: unsubscribe };
})(window);

/* abandonment-hub service worker: shows the hub's pushes and opens the cart on click.
 *
 * Serve this file from the shop's own origin (e.g. https://shop.example/abandonment-hub-sw.js):
 * a service worker only controls pages of the origin it comes from. If the shop already has a
 * service worker, add these two listeners to it instead (one origin, one worker per scope).
 *
 * The payload is JSON: {"title", "body", "url", "icon", "tag", "click"}; "click" is the hub's
 * click beacon, posted when the notification is clicked. The tag is the abandonment
 * stage (cart, contact, payment): a newer push with the same tag replaces the notification on
 * screen instead of stacking a second one.
 */
self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data.text() };
  }
  var options = {
    body: data.body || "",
    tag: data.tag || "cart",
    data: { url: data.url || "/", click: data.click || null }
  };
  if (data.icon) options.icon = data.icon;
  event.waitUntil(self.registration.showNotification(data.title || "", options));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var data = event.notification.data || {};
  var work = [];
  if (data.click) {
    // tell the hub about the click (counted once per push); no-cors: the hub is another origin
    work.push(fetch(data.click, { method: "POST", mode: "no-cors", keepalive: true })
      .catch(function () {}));
  }
  if (data.url) work.push(self.clients.openWindow(data.url));
  event.waitUntil(Promise.all(work));
});

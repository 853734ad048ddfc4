// The page's service worker: shows a notification for each push Roost sends (the payload only
// this browser can decrypt), one per room at a time, and opens the room when it is clicked.

self.addEventListener("push", (event) => {
  let notice;
  try {
    notice = event.data?.json();
  } catch {
    return;
  }
  if (notice?.type !== "message") return;
  const unread = notice.unread > 1 ? ` (${notice.unread} unread)` : "";
  event.waitUntil(
    self.registration.showNotification(`${notice.from} in ${notice.room}${unread}`, {
      body: notice.preview ?? "New message",
      tag: `room:${notice.room}`,
      renotify: true,
      data: { room: notice.room, seq: notice.seq },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const { room } = event.notification.data ?? {};
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const page = windows[0];
      if (page) {
        page.postMessage({ type: "open-room", room });
        return page.focus();
      }
      return self.clients.openWindow(`/#room=${encodeURIComponent(room)}`);
    }),
  );
});

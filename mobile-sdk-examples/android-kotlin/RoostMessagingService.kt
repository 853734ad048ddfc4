// Push notifications for an Android app through Firebase Cloud Messaging (PROTOCOL.md, section
// 12): the FCM registration token goes to Roost whenever Firebase hands out a new one, and each
// push (a data message: Roost sends no notification block, so the app decides what is shown) is
// shown as one notification per room, replaced as newer messages arrive.
//
// Declared in AndroidManifest.xml:
//   <service android:name=".RoostMessagingService" android:exported="false">
//     <intent-filter><action android:name="com.google.firebase.MESSAGING_EVENT" /></intent-filter>
//   </service>
// Dependencies: com.google.firebase:firebase-messaging, OkHttp.
package org.roost.example

import android.app.NotificationChannel
import android.app.NotificationManager
import androidx.core.app.NotificationCompat
import com.google.firebase.messaging.FirebaseMessaging
import com.google.firebase.messaging.FirebaseMessagingService
import com.google.firebase.messaging.RemoteMessage
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import org.json.JSONObject

/** Registers this device's FCM token with Roost: one registration per (user, device); the same
 * `device` registered again (a rotated token) replaces the one before. Call it after sign-in too
 * (`FirebaseMessaging.getInstance().token`), since Roost forgets a user's devices when their
 * sign-in is revoked. */
fun registerForPushes(http: OkHttpClient, baseUrl: String, accessToken: String, deviceId: String, fcmToken: String) {
    val body = JSONObject(mapOf("device" to deviceId, "kind" to "fcm", "token" to fcmToken)).toString()
    val request = Request.Builder()
        .url("$baseUrl/v1/push/devices")
        .header("Authorization", "Bearer $accessToken")
        .post(body.toRequestBody("application/json".toMediaType()))
        .build()
    http.newCall(request).execute().use { response ->
        check(response.code == 201) { "registering for pushes: ${response.code} ${response.body?.string()}" }
    }
}

/** After sign-in: the current token, registered. */
fun registerCurrentToken(http: OkHttpClient, baseUrl: String, accessToken: String, deviceId: String) {
    FirebaseMessaging.getInstance().token.addOnSuccessListener { token ->
        Thread { registerForPushes(http, baseUrl, accessToken, deviceId, token) }.start()
    }
}

class RoostMessagingService : FirebaseMessagingService() {
    private val http = OkHttpClient()

    /** Firebase rotated the token: Roost must know the new one (the session's store supplies
     * the base URL, access token and this device's stable id, as in RoomViewModel). */
    override fun onNewToken(token: String) {
        val session = Session.load(this) ?: return // signed out: registered after the next sign-in
        registerForPushes(http, session.baseUrl, session.accessToken, session.deviceId, token)
    }

    /** `data`: type, room, seq, from, ts, unread, badge (all strings) and, when the server's
     * `push.preview` is on, preview. Pushes of one room collapse (collapse_key = room). */
    override fun onMessageReceived(message: RemoteMessage) {
        val data = message.data
        if (data["type"] != "message") return
        val room = data["room"] ?: return
        val unread = data["unread"]?.toIntOrNull() ?: 1
        val manager = getSystemService(NotificationManager::class.java)
        manager.createNotificationChannel(NotificationChannel("rooms", "Room messages", NotificationManager.IMPORTANCE_HIGH))
        val notification = NotificationCompat.Builder(this, "rooms")
            .setSmallIcon(android.R.drawable.stat_notify_chat)
            .setContentTitle("${data["from"]} in $room")
            .setContentText(data["preview"] ?: if (unread > 1) "$unread new messages" else "New message")
            .setNumber(unread)
            .setAutoCancel(true)
            .build()
        // one notification per room: the newest replaces the one before
        manager.notify(room, 0, notification)
    }
}

// A Roost room screen's state for Android, with the HiveMQ MQTT client
// (com.hivemq:hivemq-mqtt-client) and OkHttp + org.json for the HTTP API. Same behaviour as the
// tested python-bot: MQTT 5, username = user, password = access token, stamped envelopes, and
// gap recovery by `seq` from history after every (re)connect (PROTOCOL.md, sections 2 and 8).
// Files are uploaded over HTTP first, then attached to a message by id (section 11). Edits, deletes
// and reactions arrive on the same topic and are folded into the message they name (section 4).
package dev.roost.example

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import com.hivemq.client.mqtt.datatypes.MqttQos
import com.hivemq.client.mqtt.mqtt5.Mqtt5AsyncClient
import com.hivemq.client.mqtt.mqtt5.Mqtt5Client
import com.hivemq.client.mqtt.mqtt5.exceptions.Mqtt5DisconnectException
import com.hivemq.client.mqtt.mqtt5.lifecycle.Mqtt5ClientDisconnectedContext
import com.hivemq.client.mqtt.mqtt5.message.disconnect.Mqtt5DisconnectReasonCode
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import org.json.JSONArray
import org.json.JSONObject
import java.io.IOException
import java.net.URLEncoder
import java.util.UUID

/** An upload as a message carries it, expanded by the server from its record of the upload. */
data class Attachment(
    val media: String,
    val contentType: String,
    val size: Long,
    val filename: String,
    val width: Int? = null,
    val height: Int? = null,
)

/** One key given to a message: how many gave it, `me` when the user is one of them. */
data class Reaction(val key: String, val count: Int, val me: Boolean)

/** A message as its edits, delete and reactions left it. */
data class Message(
    val seq: Long,
    val from: String,
    val body: String,
    val ts: Long,
    val attachments: List<Attachment> = emptyList(),
    val editedAt: Long? = null,
    val deleted: Boolean = false, // a tombstone: body and attachments erased
    val deletedBy: String? = null,
    val reactions: List<Reaction> = emptyList(),
)

/** The answer of POST /v1/rooms/{room}/media; `url` (a path) works without a bearer header for an hour. */
data class Upload(val id: String, val url: String, val contentType: String, val size: Long, val filename: String)

/** An upload the server refused: 413 payload_too_large / quota_exceeded, 415 unsupported_media_type, 403/404. */
class UploadRefused(val status: Int, val code: String?, message: String) : IOException("upload refused: $status $code: $message")

/** Access and refresh tokens from POST /v1/auth/login; refreshed before the access token expires. */
class Tokens(private val http: OkHttpClient, private val baseUrl: String, var access: String, private var refresh: String) {
    /** POST /v1/auth/refresh: refresh tokens rotate, so both are replaced. */
    fun refresh() {
        val body = JSONObject().put("refresh_token", refresh).toString().toRequestBody(JSON)
        http.newCall(Request.Builder().url("$baseUrl/v1/auth/refresh").post(body).build()).execute().use { response ->
            check(response.isSuccessful) { "refresh failed: ${response.code}" }
            val pair = JSONObject(response.body!!.string())
            access = pair.getString("access_token")
            refresh = pair.getString("refresh_token")
        }
    }
}

class RoomViewModel(
    private val user: String,
    private val room: String,
    private val tokens: Tokens,
    private val baseUrl: String,
    mqttHost: String,
    mqttPort: Int,
    deviceId: String,
    private val http: OkHttpClient = OkHttpClient(),
) : ViewModel() {
    private val topic = "rooms/$room/messages"
    private val shown = sortedMapOf<Long, Message>() // messages only; events fold into them
    private var lastSeq = 0L // the highest seq taken, messages and events: where recovery resumes
    private var held: MutableList<JSONObject>? = null // live envelopes that wait while recovery runs
    private val _messages = MutableStateFlow<List<Message>>(emptyList())
    val messages: StateFlow<List<Message>> = _messages
    private val _uploadError = MutableStateFlow<String?>(null)
    val uploadError: StateFlow<String?> = _uploadError

    private val client: Mqtt5AsyncClient = Mqtt5Client.builder()
        .identifier(deviceId) // one stable id per device: it names the device in presence
        .serverHost(mqttHost)
        .serverPort(mqttPort)
        .automaticReconnectWithDefaultConfig()
        // every (re)connect presents the current access token, refreshed when the server said it expired
        .simpleAuth().username(user).password(tokens.access.toByteArray()).applySimpleAuth()
        .addDisconnectedListener { generic ->
            val context = generic as Mqtt5ClientDisconnectedContext
            val reason = (context.cause as? Mqtt5DisconnectException)?.mqttMessage?.reasonCode
            if (reason == Mqtt5DisconnectReasonCode.MAXIMUM_CONNECT_TIME) tokens.refresh() // 0xA0: token expired
            context.reconnector.connectWith().simpleAuth()
                .username(user).password(tokens.access.toByteArray()).applySimpleAuth().applyConnect()
        }
        .addConnectedListener { subscribeAndRecover() }
        .buildAsync()

    fun start() {
        client.connectWith().cleanStart(false).sessionExpiryInterval(3600).send()
    }

    fun send(body: String, attachments: List<String> = emptyList()) {
        val payload = JSONObject().put("body", body)
        if (attachments.isNotEmpty()) {
            payload.put("attachments", JSONArray(attachments.map { JSONObject().put("media", it) }))
        }
        publish(payload)
    }

    /** Replaces the body of one of the user's messages. */
    fun edit(seq: Long, body: String) {
        publish(JSONObject().put("type", "edit").put("target", seq).put("body", body))
    }

    /** Deletes a message: the user's own, or any when the user owns the room. */
    fun delete(seq: Long) {
        publish(JSONObject().put("type", "delete").put("target", seq))
    }

    /** Gives `key` (an emoji) to a message, or takes it back when the user had given it: each call toggles. */
    fun react(seq: Long, key: String) {
        publish(JSONObject().put("type", "reaction").put("target", seq).put("key", key))
    }

    private fun publish(payload: JSONObject) {
        // the client's id makes a re-send after a reconnect idempotent
        payload.put("id", UUID.randomUUID().toString())
        client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE).payload(payload.toString().toByteArray()).send()
    }

    /**
     * POST /v1/rooms/{room}/media?filename=…: the raw bytes with their Content-Type and the bearer
     * header. The server sniffs the bytes: a type outside the declared family is refused (415);
     * "application/octet-stream" lets the bytes decide. From a picker:
     * `contentResolver.openInputStream(uri)!!.readBytes()` and `contentResolver.getType(uri)`.
     */
    suspend fun upload(bytes: ByteArray, filename: String, contentType: String): Upload = withContext(Dispatchers.IO) {
        val request = Request.Builder()
            .url("$baseUrl/v1/rooms/$room/media?filename=${URLEncoder.encode(filename, "UTF-8")}")
            .header("Authorization", "Bearer ${tokens.access}")
            .post(bytes.toRequestBody(contentType.toMediaType()))
            .build()
        http.newCall(request).execute().use { response ->
            val text = response.body!!.string()
            if (response.code != 201) {
                // {"error":{"code":…,"message":…}}
                val error = runCatching { JSONObject(text).getJSONObject("error") }.getOrNull()
                throw UploadRefused(response.code, error?.optString("code"), error?.optString("message").orEmpty())
            }
            val json = JSONObject(text)
            Upload(json.getString("id"), json.getString("url"), json.getString("content_type"),
                json.getLong("size"), json.getString("filename"))
        }
    }

    /** Uploads a file and sends a message attaching it (`{"body","attachments":[{"media":id}]}`). */
    fun sendFile(bytes: ByteArray, filename: String, contentType: String, body: String = filename) {
        viewModelScope.launch {
            try {
                send(body, listOf(upload(bytes, filename, contentType).id))
            } catch (failed: IOException) { // UploadRefused, or no network
                _uploadError.value = failed.message
            }
        }
    }

    /** A request for an attachment's bytes (GET /v1/media/{id}, `Range` supported), for an image loader. */
    fun download(attachment: Attachment): Request = Request.Builder()
        .url("$baseUrl/v1/media/${attachment.media}")
        .header("Authorization", "Bearer ${tokens.access}")
        .build()

    private fun subscribeAndRecover() {
        synchronized(shown) { if (held == null) held = mutableListOf() }
        client.subscribeWith().topicFilter(topic).qos(MqttQos.AT_LEAST_ONCE)
            .callback { publish ->
                val envelope = JSONObject(String(publish.payloadAsBytes))
                // while a recovery runs it waits in `held`, else it is taken now
                synchronized(shown) { held?.add(envelope) ?: take(envelope, lastSeq) }
            }
            .send()
            .thenAccept { viewModelScope.launch { recoverGap() } }
    }

    /**
     * GET /v1/rooms/{room}/messages?after=<highest seq taken>, page by page, oldest first; then the
     * live envelopes that came meanwhile (those the pages had are skipped by `seq`).
     */
    private suspend fun recoverGap() = withContext(Dispatchers.IO) {
        try {
            var after = synchronized(shown) { lastSeq }
            while (true) {
                val request = Request.Builder()
                    .url("$baseUrl/v1/rooms/$room/messages?after=$after&limit=500")
                    .header("Authorization", "Bearer ${tokens.access}")
                    .build()
                val page = http.newCall(request).execute().use { JSONObject(it.body!!.string()).getJSONArray("messages") }
                synchronized(shown) {
                    for (i in 0 until page.length()) take(page.getJSONObject(i), after)
                    after = lastSeq
                }
                if (page.length() < 500) break
            }
        } finally {
            synchronized(shown) {
                val live = held.orEmpty()
                held = null
                live.forEach { take(it, lastSeq) }
            }
        }
    }

    /**
     * Takes one envelope, live or from a page fetched with `after=`, each `seq` once and in order
     * (caller holds `shown`). A message is shown; an event is folded into the message it targets,
     * never shown: a page's messages are current as of the page, so its events fold only into
     * messages held before it (PROTOCOL.md, 4).
     */
    private fun take(json: JSONObject, after: Long) {
        val seq = json.getLong("seq")
        if (seq <= lastSeq) return // a QoS 1 re-delivery, or one a page already had
        lastSeq = seq
        val target = json.optLong("target")
        if (!json.has("type")) {
            shown[seq] = message(json)
        } else if (target <= after) {
            shown[target]?.let { shown[target] = folded(it, json) }
        }
        _messages.value = shown.values.toList()
    }

    private fun message(json: JSONObject): Message {
        val attachments = json.optJSONArray("attachments") ?: JSONArray()
        val reactions = json.optJSONArray("reactions") ?: JSONArray()
        return Message(
            json.getLong("seq"), json.getString("from"), json.getString("body"), json.getLong("ts"),
            (0 until attachments.length()).map { i ->
                val a = attachments.getJSONObject(i)
                Attachment(
                    a.getString("media"), a.getString("content_type"), a.getLong("size"), a.getString("filename"),
                    if (a.has("width")) a.getInt("width") else null, if (a.has("height")) a.getInt("height") else null,
                )
            },
            editedAt = if (json.has("edited_at")) json.getLong("edited_at") else null,
            deleted = json.optBoolean("deleted"),
            deletedBy = if (json.has("deleted_by")) json.getString("deleted_by") else null,
            reactions = (0 until reactions.length()).map { i ->
                val r = reactions.getJSONObject(i)
                Reaction(r.getString("key"), r.getInt("count"), r.optBoolean("me"))
            },
        )
    }

    /** `message` as an edit, delete or reaction leaves it. */
    private fun folded(message: Message, event: JSONObject): Message = when (event.getString("type")) {
        "edit" -> message.copy(body = event.getString("body"), editedAt = event.getLong("ts"))
        "delete" -> message.copy(
            body = "", attachments = emptyList(), reactions = emptyList(), deleted = true, deletedBy = event.getString("from"),
        )
        "reaction" -> {
            val key = event.getString("key")
            val on = event.getBoolean("on")
            val given = message.reactions.find { it.key == key } ?: Reaction(key, 0, false)
            val now = given.copy(
                count = given.count + if (on) 1 else -1,
                me = if (event.getString("from") == user) on else given.me,
            )
            // keys stay in the order first given; one nobody gives any more goes
            val reactions = when {
                message.reactions.any { it.key == key } -> message.reactions.map { if (it.key == key) now else it }
                else -> message.reactions + now
            }
            message.copy(reactions = reactions.filter { it.count > 0 })
        }
        else -> message
    }

    override fun onCleared() {
        client.disconnect()
    }
}

private val JSON = "application/json".toMediaType()

-- wrk: POST the JSON body in the BODY environment variable (bench/lib/http.mjs sets it).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"

@rem dradmin: druvaa admin (MSI has no links; the Linux packages link dradmin to druvaa instead).
@"%~dp0druvaa.exe" admin %*
@exit /b %errorlevel%

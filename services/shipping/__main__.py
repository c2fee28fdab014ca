from services.shipping.app import service

service.run()
